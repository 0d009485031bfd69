"""The chaos run's payment gateway: the shop's simulated gateway over HTTP, writing down every real charge.

Both payment instances call this one process (``EDA_PAYMENT_GATEWAY_URL``), so its idempotency keys
(the orders' ids) hold across them, as a real gateway's would. Each charge or refund it really makes
(not a replayed key) is a JSON line in ``--log``: the checker counts them, so an order charged twice
would show, whatever payment's own table says.

    python -m tests.chaos.gateway --host 10.219.19.14 --port 8080 --log gateway-charges.jsonl
"""

import argparse
import json
import signal
import threading
import time
from decimal import Decimal

from eda_shop.workers.gateway import Simulation, serve


class LoggedSimulation(Simulation):
    """The shop's simulation; every charge and refund it makes is appended to ``log`` (flushed at once)."""

    def __init__(self, log_path: str, **kwargs):
        super().__init__(**kwargs)
        self._log = open(log_path, "a", buffering=1)
        self._log_lock = threading.Lock()

    def _write(self, kind: str, body, answer) -> None:
        status, payload = answer
        if status in (200, 201):
            order_id = body.get("orderId") if isinstance(body, dict) else None
            with self._log_lock:
                self._log.write(json.dumps({"kind": kind, "order_id": order_id, "amount": body.get("amount"),
                                            "id": payload.get("paymentId") or payload.get("refundId"),
                                            "at": time.time()}) + "\n")

    def _charge(self, body):
        answer = super()._charge(body)
        self._write("charge", body, answer)
        return answer

    def _refund(self, body):
        answer = super()._refund(body)
        self._write("refund", body, answer)
        return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--log", required=True)
    parser.add_argument("--decline-over", default="10000")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each answer takes")
    args = parser.parse_args()
    server = serve(LoggedSimulation(args.log, decline_over=Decimal(args.decline_over), latency=args.latency), args.host, args.port)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.stop())
    print(json.dumps({"message": "serving", "port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
