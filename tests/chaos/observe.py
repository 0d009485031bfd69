"""After the run has healed and drained: what the wire, the queues and PostgreSQL hold, as one JSON file.

Runs in the client's namespace (the only place from which the cluster and PostgreSQL are reached):

- the spy queue (a quorum queue bound to the events exchange with ``#`` before the first order) is read
  to the end: every event published during the run, copies included;
- every other queue named in ``--queues`` is looked at without taking anything away (messages taken
  unacked, then given back when the channel closes): what did not drain, with the reason of a dead letter;
- the workers' tables (charges, refunds, reservations, stock, ledger entries and balances) are read.

    python -m tests.chaos.observe --url URL --database-url URL --queues q1,q2 --out observed.json
    python -m tests.chaos.observe --url URL --declare-spy       (before the run: the spy queue, bound)
"""

import argparse
import json
from datetime import datetime

import kombu

from tests.chaos.processes import NAMESPACE

SPY = f"{NAMESPACE}.spy"
PEEK_LIMIT = 20_000  # messages looked at per queue, at most (basic.qos takes up to 65535)
TABLES = {
    "charges": "SELECT order_id, status, payment_id, reason, amount FROM charges",
    "refunds": "SELECT order_id, refund_id FROM refunds",
    "reservations": "SELECT order_id, status FROM reservations",
    "stock": "SELECT sku, quantity FROM stock",
    "entries": "SELECT payment_id, kind, order_id, user_id, amount, balance FROM entries",
    "balances": "SELECT user_id, balance FROM balances",
}


def declare_spy(url: str) -> None:
    with kombu.Connection(url) as conn:
        channel = conn.channel()
        exchange = kombu.Exchange(f"{NAMESPACE}.events", type="topic", durable=True)
        exchange.declare(channel=channel)
        queue = kombu.Queue(SPY, exchange=exchange, routing_key="#", durable=True,
                            queue_arguments={"x-queue-type": "quorum"})
        queue(channel).declare()


def _epoch(text) -> float | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _event(message) -> dict:
    try:
        body = json.loads(message.body)
    except ValueError:
        body = {}
    headers = message.properties.get("application_headers") or message.headers or {}
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    return {"id": body.get("id") or message.properties.get("message_id"), "type": body.get("type"),
            "time": _epoch(body.get("time")), "data": data, "order_id": data.get("orderId"),
            "reason": headers.get("eda-exception-message") or headers.get("x-first-death-reason")}


def read_spy(conn) -> list[dict]:
    channel = conn.channel()
    events = []
    while True:
        message = channel.basic_get(SPY, no_ack=True)
        if message is None:
            return events
        events.append(_event(message))


def peek(conn, queue: str) -> list[dict]:
    """The messages of ``queue``, left in place: consumed unacked (basic.get is refused by quorum queues
    with a single active consumer), given back when the channel closes."""
    found = []
    with conn.channel() as channel:
        try:
            channel.basic_qos(0, PEEK_LIMIT, False)
            channel.basic_consume(queue, no_ack=False, callback=lambda message: found.append(_event(message)))
            while len(found) < PEEK_LIMIT:
                before = len(found)
                try:
                    conn.drain_events(timeout=1.0)
                except TimeoutError:
                    if len(found) == before:
                        break
        except conn.channel_errors as exc:
            found.append({"type": None, "order_id": None, "reason": f"cannot read the queue: {exc}"})
    return found


def read_tables(database_url: str) -> dict:
    import psycopg

    from eda.store import schema_name

    out = {}
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        conn.execute(f'SET search_path TO "{schema_name(NAMESPACE)}"')
        for table, query in TABLES.items():
            cursor = conn.execute(query)
            names = [c.name for c in cursor.description]
            out[table] = [dict(zip(names, (str(v) if not isinstance(v, (int, str)) or v is None else v
                                           for v in row))) for row in cursor.fetchall()]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--declare-spy", action="store_true")
    parser.add_argument("--database-url")
    parser.add_argument("--queues", default="")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.declare_spy:
        declare_spy(args.url)
        return 0
    with kombu.Connection(args.url, connect_timeout=10) as conn:
        conn.connect()
        queues = {q: peek(conn, q) for q in args.queues.split(",") if q and q != SPY}
        events = read_spy(conn)
    observed = {"events": events, "queues": queues, "tables": read_tables(args.database_url)}
    with open(args.out, "w") as out:
        json.dump(observed, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
