"""The payment gateway: its HTTP JSON API, a client for it, and a simulation of it.

Part of the reference shop. ``eda gateway`` (this module's ``command``, added to the CLI through the
shop's ``eda.commands`` entry point) serves ``Simulation`` over HTTP; the payment worker talks to any gateway on this API
through ``HttpGateway``, or to ``Simulation`` in process when no URL is configured. Technical
failures (5xx, timeouts, refused connections) raise GatewayError, which the circuit breaker counts;
a decline (402) is a business answer and returns normally; any other 4xx is a PermanentError (the
request is wrong: retrying cannot help).
"""

import random
import signal
import socket
import threading
import time
import uuid
import weakref
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import click
import orjson

from eda import EdaError
from eda.errors import ConfigError, PermanentError

class GatewayError(EdaError):
    """The payment gateway failed technically (5xx, timeout, refused): counted by the breaker, and a
    transient failure of the order (retried, then dead-lettered) as any error but eda's permanent ones."""


# 4xx answers that say "not now" rather than "never": retried like a 5xx.
TRANSIENT_4XX = {408, 409, 425, 429}
CONNECT_TIMEOUT = 3.0  # seconds a new connection may take, at most (and never more than the call's timeout)
BACKLOG = 4096  # pending connections the server's socket holds (the kernel caps it at net.core.somaxconn)


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
        self.reject_orders: set[str] = set()  # orderIds answered 422 (the request is wrong) unless failing
        self.calls: Counter = Counter()  # idempotency key -> requests received (replays and failures too)
        self._answers = {}  # idempotency key -> (http status, body): a repeated key gets the first answer
        self._lock = threading.Lock()
        self.charges = 0  # how many charges were really made (not replayed); tests read it
        self.in_flight = 0
        self.peak_in_flight = 0  # the most requests served at once: shows callers' concurrency

    def handle(self, path: str, body: dict, key: str | None) -> tuple[int, dict]:
        """Answer one request as the HTTP API would: (status code, JSON body); waits ``latency`` first."""
        self._enter(key)
        try:
            if self.latency:
                time.sleep(self.latency)
            return self._answer(path, body, key)
        finally:
            self._leave()

    async def handle_async(self, path: str, body: dict, key: str | None) -> tuple[int, dict]:
        """``handle`` for an event loop: the latency is waited without holding a thread."""
        import asyncio

        self._enter(key)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            return self._answer(path, body, key)
        finally:
            self._leave()

    def _enter(self, key):
        with self._lock:
            self.calls[key] += 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def _leave(self):
        with self._lock:
            self.in_flight -= 1

    def _answer(self, path: str, body: dict, key: str | None) -> tuple[int, dict]:
        if self.down or self._failing(body) or (self.failure_rate and random.random() < self.failure_rate):
            return 503, {"status": "error", "reason": "gateway unavailable"}
        if path not in ("/charges", "/refunds"):
            return 404, {"status": "error", "reason": "not found"}
        if self._order_id(body) in self.reject_orders:
            return 422, {"status": "error", "reason": "the gateway rejects this order's request"}
        with self._lock:
            if key and key in self._answers:
                return self._answers[key]
            answer = self._charge(body) if path == "/charges" else self._refund(body)
            if key:
                self._answers[key] = answer
            return answer

    def _failing(self, body) -> bool:
        return self._order_id(body) in self.fail_orders

    @staticmethod
    def _order_id(body) -> str | None:
        order_id = body.get("orderId") if isinstance(body, dict) else None
        return order_id if isinstance(order_id, str) else None

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
    if status in (200, 201):
        return Answer("succeeded", body.get("paymentId") or body.get("refundId"))
    if status == 402:
        return Answer("declined", reason=body.get("reason", "declined"))
    text = f"{what}: gateway answered {status} {body.get('reason', '')}".strip()
    if 400 <= status < 500 and status not in TRANSIENT_4XX:
        raise PermanentError(text)
    raise GatewayError(text)


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

    def close(self) -> None:
        """Release what the client holds (its connections)."""


class InProcessGateway(Gateway):
    def __init__(self, simulation: Simulation):
        self.simulation = simulation

    def request(self, path, body, key):
        return self.simulation.handle(path, body, key)


class HttpGateway(Gateway):
    """A gateway on the HTTP JSON API at ``base_url``, through a pool of keep-alive connections (urllib3).

    At most ``pool_size`` connections are open, one per handler running at once (the worker's
    concurrency); a call waits at most ``timeout`` seconds in all (a new connection at most
    CONNECT_TIMEOUT of them). The client retries nothing itself: the worker's retry schedule and the
    breaker see every failure.
    """

    def __init__(self, base_url: str, timeout: float = 5.0, pool_size: int = 4):
        import urllib3  # here: importing it costs every `eda` command, and only a worker with a URL needs it

        self.base_url = base_url.rstrip("/")
        url = urllib3.util.parse_url(self.base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"payment gateway URL: not an http(s) URL: {base_url!r}")
        self.prefix = url.path or ""
        self.timeout = timeout
        self.pool = urllib3.connection_from_url(
            self.base_url, maxsize=pool_size, block=True, retries=False,
            timeout=urllib3.Timeout(connect=min(timeout, CONNECT_TIMEOUT), read=timeout, total=timeout))

    def request(self, path, body, key):
        import urllib3

        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        try:
            resp = self.pool.urlopen("POST", self.prefix + path, body=orjson.dumps(body), headers=headers,
                                     redirect=False, pool_timeout=self.timeout)
        except urllib3.exceptions.EmptyPoolError:  # every connection busy for the whole timeout
            raise GatewayError(f"no free connection to the gateway at {self.base_url} "
                               f"within {self.timeout:g}s") from None
        except urllib3.exceptions.NewConnectionError as exc:  # refused, no route: a ConnectTimeoutError too
            cause = exc.__cause__ or exc.__context__ or exc  # the OSError: "[Errno 111] Connection refused"
            raise GatewayError(f"gateway at {self.base_url} unreachable: {cause}") from None
        except urllib3.exceptions.TimeoutError:
            raise GatewayError(f"gateway at {self.base_url} did not answer within {self.timeout:g}s") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise GatewayError(f"gateway at {self.base_url} unreachable: {reason}") from None
        try:
            payload = orjson.loads(resp.data or b"{}")
        except ValueError:
            payload = {}
        return resp.status, payload if isinstance(payload, dict) else {}

    def close(self):
        self.pool.close()


def _app(simulation: Simulation, server: "Server"):
    """The gateway's HTTP API over ``simulation``: POST /charges, POST /refunds, GET /health (an aiohttp
    application, imported here: every `eda` command imports this module, only `eda gateway` serves)."""
    from aiohttp import web

    def send(status: int, payload: dict):
        return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")

    async def answer(request):
        server.count(request.transport)
        if request.method == "GET" and request.path == "/health":
            return send(503 if simulation.down else 200, {"status": "down" if simulation.down else "ok"})
        if request.method != "POST":
            return send(404, {"status": "error", "reason": "not found"})
        try:
            body = orjson.loads(await request.read() or b"{}")
        except ValueError:
            return send(400, {"status": "error", "reason": "body is not JSON"})
        return send(*await simulation.handle_async(request.path, body, request.headers.get("Idempotency-Key")))

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", answer)
    return app


class Server:
    """``simulation`` served over HTTP/1.1 with keep-alive by aiohttp on an asyncio loop (uvloop where
    installed): one thread holds hundreds of connections, and a request waiting out the latency costs a
    timer, not a thread. The interface is socketserver's (``serve_forever``, ``shutdown``,
    ``server_close``, ``server_address``)."""

    def __init__(self, simulation: Simulation, sock: socket.socket):
        self.simulation = simulation
        self.socket = sock
        self.server_address = sock.getsockname()[:2]
        self.connections = 0  # connections that sent a request: fewer than requests shows keep-alive
        self._open = weakref.WeakSet()  # the open ones already counted
        self._shutdown = threading.Event()
        self._done = threading.Event()

    def count(self, transport) -> None:
        if transport is not None and transport not in self._open:
            self._open.add(transport)
            self.connections += 1

    def serve_forever(self) -> None:
        """Serve until ``shutdown`` (from another thread or a signal handler); then close the connections."""
        import asyncio

        self._done.clear()
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(self._serve())
        finally:
            self._done.set()

    async def _serve(self):
        import asyncio

        from aiohttp import web

        # Requests waiting on the simulated latency are cancelled at shutdown, not waited for.
        runner = web.AppRunner(_app(self.simulation, self), access_log=None, handle_signals=False,
                               shutdown_timeout=0.1)
        await runner.setup()
        await web.SockSite(runner, self.socket).start()
        try:
            while not self._shutdown.is_set():
                await asyncio.sleep(0.05)
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        """Ask ``serve_forever`` to return, without waiting (safe in a signal handler)."""
        self._shutdown.set()

    def shutdown(self) -> None:
        """Stop ``serve_forever`` and wait until it returned."""
        self._shutdown.set()
        self._done.wait()

    def server_close(self) -> None:
        self.socket.close()


def _loop_factory():
    """uvloop where it is installed (not on Windows): measured here, a third less CPU per answer."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def serve(simulation: Simulation, host: str = "127.0.0.1", port: int = 8080) -> Server:
    """An HTTP server for ``simulation``, listening once this returns; call ``serve_forever`` on it."""
    sock = socket.create_server((host, port), backlog=BACKLOG)
    return Server(simulation, sock)


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
    for signum in (signal.SIGTERM, signal.SIGINT):  # either stops it cleanly, exit 0
        signal.signal(signum, lambda *_: server.stop())
    click.echo(f"payment gateway simulation on http://{host}:{server.server_address[1]}", err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
