"""The payment gateway: its HTTP JSON API, a client for it, and a simulation of it.

Part of the reference shop. ``eda gateway`` (this module's ``command``, added to the CLI through the
shop's ``eda.commands`` entry point) serves ``Simulation`` over HTTP; the payment worker talks to any gateway on this API
through ``HttpGateway``, or to ``Simulation`` in process when no URL is configured. Technical
failures (5xx, timeouts, refused connections) raise GatewayError, which the circuit breaker counts;
a decline (402) is a business answer and returns normally.
"""

import json
import random
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click

from eda.errors import ConfigError, GatewayError


@dataclass(frozen=True)
class Answer:
    """A gateway's answer to a charge or refund."""

    status: str  # "succeeded" or "declined"
    id: str | None = None  # paymentId or refundId
    reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class Simulation:
    """A gateway that declines amounts over a limit and can be slow, flaky or down, for every order or only
    for the orders in ``fail_orders``; ``calls`` counts the requests it received per idempotency key."""

    def __init__(self, decline_over=Decimal("10000"), latency: float = 0.0, failure_rate: float = 0.0,
                 down: bool = False):
        self.decline_over = Decimal(decline_over)
        self.latency = latency
        self.failure_rate = failure_rate
        self.down = down
        self.fail_orders: set[str] = set()  # orderIds answered 503 on every request, whatever else holds
        self.calls: Counter = Counter()  # idempotency key -> requests received (replays and failures too)
        self._answers = {}  # idempotency key -> (http status, body): a repeated key gets the first answer
        self._lock = threading.Lock()
        self.charges = 0  # how many charges were really made (not replayed); tests read it
        self.in_flight = 0
        self.peak_in_flight = 0  # the most requests served at once: shows callers' concurrency

    def handle(self, path: str, body: dict, key: str | None) -> tuple[int, dict]:
        """Answer one request as the HTTP API would: (status code, JSON body)."""
        with self._lock:
            self.calls[key] += 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            return self._answer(path, body, key)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, path: str, body: dict, key: str | None) -> tuple[int, dict]:
        if self.down or self._failing(body) or (self.failure_rate and random.random() < self.failure_rate):
            return 503, {"status": "error", "reason": "gateway unavailable"}
        if path not in ("/charges", "/refunds"):
            return 404, {"status": "error", "reason": "not found"}
        with self._lock:
            if key and key in self._answers:
                return self._answers[key]
            answer = self._charge(body) if path == "/charges" else self._refund(body)
            if key:
                self._answers[key] = answer
            return answer

    def _failing(self, body) -> bool:
        order_id = body.get("orderId") if isinstance(body, dict) else None
        return isinstance(order_id, str) and order_id in self.fail_orders

    def _charge(self, body) -> tuple[int, dict]:
        try:
            amount = Decimal(str(body["amount"]))
        except Exception:
            return 400, {"status": "error", "reason": "amount is missing or not a number"}
        if amount > self.decline_over:
            return 402, {"status": "declined", "reason": f"amount over the limit of {self.decline_over}"}
        self.charges += 1
        return 201, {"paymentId": f"pay_{uuid.uuid4().hex[:16]}", "status": "succeeded"}

    def _refund(self, body) -> tuple[int, dict]:
        return 201, {"refundId": f"ref_{uuid.uuid4().hex[:16]}", "status": "succeeded"}


def _answer(status: int, body: dict, what: str) -> Answer:
    if status == 201:
        return Answer("succeeded", body.get("paymentId") or body.get("refundId"))
    if status == 402:
        return Answer("declined", reason=body.get("reason", "declined"))
    raise GatewayError(f"{what}: gateway answered {status} {body.get('reason', '')}".strip())


class Gateway:
    """The client interface the payment worker uses; ``request`` is what differs per transport."""

    def request(self, path: str, body: dict, key: str) -> tuple[int, dict]:
        raise NotImplementedError

    def charge(self, order_id: str, amount: Decimal, currency: str) -> Answer:
        body = {"orderId": order_id, "amount": str(amount), "currency": currency}
        return _answer(*self.request("/charges", body, order_id), what=f"charge of order {order_id}")

    def refund(self, order_id: str, payment_id: str, amount: Decimal) -> Answer:
        body = {"orderId": order_id, "paymentId": payment_id, "amount": str(amount)}
        return _answer(*self.request("/refunds", body, f"refund-{order_id}"), what=f"refund of order {order_id}")


class InProcessGateway(Gateway):
    def __init__(self, simulation: Simulation):
        self.simulation = simulation

    def request(self, path, body, key):
        return self.simulation.handle(path, body, key)


class HttpGateway(Gateway):
    """A gateway on the HTTP JSON API at ``base_url``."""

    def __init__(self, base_url: str, timeout: float = 5.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(self, path, body, key):
        req = urllib.request.Request(
            self.base_url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": key},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read() or b"{}")
            except ValueError:
                payload = {}
            return exc.code, payload
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GatewayError(f"gateway at {self.base_url} unreachable: {reason}") from None


def serve(simulation: Simulation, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """An HTTP server for ``simulation``; call ``serve_forever`` on it."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._send(400, {"status": "error", "reason": "body is not JSON"})
                return
            self._send(*simulation.handle(self.path, body, self.headers.get("Idempotency-Key")))

        def do_GET(self):
            if self.path == "/health":
                self._send(503 if simulation.down else 200, {"status": "down" if simulation.down else "ok"})
            else:
                self._send(404, {"status": "error", "reason": "not found"})

        def _send(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):  # requests are not worth a line each on stderr
            pass

    return ThreadingHTTPServer((host, port), Handler)


@click.command("gateway")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--decline-over", default="10000", show_default=True, help="Decline charges above this amount.")
@click.option("--latency", default=0.0, show_default=True, help="Seconds each answer takes.")
@click.option("--failure-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Share of requests answered 503.")
@click.option("--down", is_flag=True, help="Answer every request 503.")
def command(host, port, decline_over, latency, failure_rate, down):
    """Serve a simulated payment gateway on the gateway's HTTP JSON API."""
    try:
        limit = Decimal(decline_over)
    except InvalidOperation:
        raise ConfigError(f"--decline-over: not a number: {decline_over!r}") from None
    try:
        server = serve(Simulation(limit, latency, failure_rate, down), host, port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops it like Ctrl-C
    click.echo(f"payment gateway simulation on http://{host}:{server.server_address[1]}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
