"""The chaos run's clients: stock first, then orders at a fixed rate for a fixed time, through eda's Producer.

Runs in the client's namespace. Every event the Producer confirmed is a JSON line of ``--out`` (the
history the checker reads): ``stock`` lines for the replenishments, ``order`` lines with the order, the
time it was handed to ``publish`` and the time ``publish`` returned. An order whose ``publish`` raised
is a ``failed`` line: not confirmed, so the checker owes it nothing (it may still have been taken).
The mix comes from the seed: users, lines, a SCARCE SKU whose stock runs out midway (those orders are
cancelled and refunded) and a few orders over the gateway's decline limit (declined).

    python -m tests.chaos.load --url 'amqp://...;amqp://...' --rate 15 --seconds 180 --seed 1 --out load.jsonl
"""

import argparse
import json
import random
import time
from decimal import Decimal

import eda_shop.contracts  # noqa: F401  (registers the shop's events)
from eda import EdaError, Producer, Settings
from eda_shop.producers.orders import place_order
from tests.chaos.processes import NAMESPACE

USERS = 40
PLENTY = ("PLENTY-A", "PLENTY-B", "PLENTY-C", "PLENTY-D")
SCARCE = "SCARCE"
LUXURY = "LUXURY"  # priced over the gateway's decline limit: its orders are declined
PLENTY_STOCK = 1_000_000
SCARCE_SHARE = 0.2  # of orders include one SCARCE unit; its stock covers about half of them
DECLINED_SHARE = 0.03
PRICES = (Decimal("4.99"), Decimal("9.50"), Decimal("12.00"), Decimal("25.25"), Decimal("40.00"))
LUXURY_PRICE = Decimal("20000.00")
RECONNECT_WINDOW = 300


def order_lines(rng: random.Random) -> list[tuple[str, int, Decimal]]:
    """One order's lines (sku, quantity, unit price), drawn from ``rng``."""
    lines = [(sku, rng.randint(1, 3), rng.choice(PRICES)) for sku in rng.sample(PLENTY, rng.randint(1, 2))]
    if rng.random() < SCARCE_SHARE:
        lines.append((SCARCE, 1, rng.choice(PRICES)))
    if rng.random() < DECLINED_SHARE:
        lines.append((LUXURY, 1, LUXURY_PRICE))
    return lines


def initial_stock(rate: float, seconds: float) -> dict[str, int]:
    return {**{sku: PLENTY_STOCK for sku in PLENTY}, SCARCE: max(10, int(rate * seconds * SCARCE_SHARE / 2)),
            LUXURY: 1_000}


class History:
    """The JSON-lines file of what the Producer confirmed (and what it failed to)."""

    def __init__(self, path: str):
        self.file = open(path, "a", buffering=1)

    def write(self, **record) -> None:
        self.file.write(json.dumps(record, default=str) + "\n")


def run(url: str, rate: float, seconds: float, seed: int, out: str) -> int:
    settings = Settings(broker_url=url, namespace=NAMESPACE, reconnect_window=RECONNECT_WINDOW)
    history = History(out)
    rng = random.Random(seed)
    producer = Producer(settings, source="chaos/load")
    for sku, quantity in initial_stock(rate, seconds).items():
        event = producer.publish("stock-replenished", {"sku": sku, "quantity": quantity})
        history.write(kind="stock", sku=sku, quantity=quantity, event_id=event.id)
    history.write(kind="start", at=time.time(), rate=rate, seconds=seconds, seed=seed)
    start = time.monotonic()
    n = 0
    while True:
        due = start + n / rate
        if due >= start + seconds:
            break
        time.sleep(max(0.0, due - time.monotonic()))  # behind after a slow publish: catch up at once
        order_id = f"o{seed}-{n:06d}"
        user_id = f"u-{rng.randrange(USERS):02d}"
        lines = order_lines(rng)
        n += 1
        sent = time.time()
        try:
            event = place_order(producer, user_id, lines, order_id=order_id)
        except EdaError as exc:  # not confirmed: owed nothing; a new connection for the next order
            history.write(kind="failed", order_id=order_id, user_id=user_id, error=f"{type(exc).__name__}: {exc}",
                          items=[[sku, quantity, str(price)] for sku, quantity, price in lines], sent=sent,
                          at=time.time())
            producer.close()
            producer = Producer(settings, source="chaos/load")
            continue
        history.write(kind="order", order_id=order_id, user_id=user_id, event_id=event.id,
                      items=[[sku, quantity, str(price)] for sku, quantity, price in lines],
                      total=str(event.data["total_amount"]), sent=sent, confirmed=time.time())
    history.write(kind="end", at=time.time(), orders=n)
    producer.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    return run(args.url, args.rate, args.seconds, args.seed, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
