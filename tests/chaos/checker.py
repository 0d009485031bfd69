"""The checker: what a run's history must show, over every order the Producer was told was confirmed.

A history is plain data (``History``): the confirmed orders, the initial stock, the events seen on the
wire (the spy queue: every event published to the events exchange, copies included), the workers' tables
in PostgreSQL after the run, the gateway's log of real charges and refunds, and what was left in the
namespace's queues after the drain. ``check`` finds:

- every confirmed order in a final state: shipped (and in the ledger), cancelled and refunded (refund in
  the ledger too), or declined; one that is not is *stuck* when a queue still holds an event of it (a
  DLQ with its reason, a work or retry queue that did not drain) and *lost* when nothing does, each with
  its last known state (the last event of it on the wire, its rows in the tables);
- no doubled effect (*duplicated*): the gateway charged or refunded an order once at most, payment
  recorded the gateway's charge, the ledger holds one entry per order and kind, stock moved once per
  reserved order, no order both reserved and cancelled;
- stock never below zero, and each SKU's stock the initial one less what reserved orders took;
- the ledger's order per user: its running balances chain from zero to the user's balance (the entries
  are the edges of one trail: a lost update or an entry applied twice breaks it), the balance is the
  user's charges less refunds, and no refund without its charge.

- each event of an order on the wire under one id: a copy sent again (a Producer's resend, a reaction
  re-published when its cause was handled again) carries the same id, since a reaction's id derives
  from its cause's (``eda.contracts.envelope.reaction_id``); a second id is a second effect downstream
  (an order shipped twice), listed as *duplicated*.
"""

import collections
import dataclasses
from decimal import Decimal

FINAL_TYPES = ("order.shipped", "order.cancelled", "payment.refunded", "payment.failed")
# The queue an event of each type goes to next, for an order's last known place.
NEXT_QUEUE = {"order.placed": "payment", "payment.succeeded": "inventory, ledger", "inventory.reserved": "shipping",
              "order.cancelled": "payment", "payment.refunded": "ledger"}


@dataclasses.dataclass
class History:
    orders: list[dict]  # confirmed: order_id, user_id, items [[sku, qty, price]], total, sent, confirmed
    stock: dict[str, int]  # initial stock per SKU (confirmed replenishments)
    events: list[dict]  # on the wire: id, type, time (epoch seconds), data (camelCase)
    tables: dict[str, list[dict]]  # charges, refunds, reservations, stock, entries, balances
    gateway: list[dict]  # real charges and refunds: kind, order_id, id
    queues: dict[str, list[dict]]  # queue -> messages left after the drain: id, type, order_id, reason
    others: list[dict] = dataclasses.field(default_factory=list)  # orders not confirmed: order_id, user_id


@dataclasses.dataclass
class Verdict:
    confirmed: int = 0
    final: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    lost: list[dict] = dataclasses.field(default_factory=list)
    stuck: list[dict] = dataclasses.field(default_factory=list)
    duplicated: list[dict] = dataclasses.field(default_factory=list)
    violations: list[str] = dataclasses.field(default_factory=list)
    repeated_reactions: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    latencies: dict[str, float] = dataclasses.field(default_factory=dict)  # order -> seconds, sent to final

    @property
    def ok(self) -> bool:
        return not (self.lost or self.stuck or self.duplicated or self.violations)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "confirmed": self.confirmed, "final": dict(self.final), "lost": self.lost,
                "stuck": self.stuck, "duplicated": self.duplicated, "violations": self.violations,
                "repeated_reactions": dict(self.repeated_reactions)}


def _order_of(data: dict) -> str | None:
    return data.get("orderId") if isinstance(data, dict) else None


class _Wire:
    """The events on the wire per order and type, each event id once (a resent copy is one event)."""

    def __init__(self, events: list[dict]):
        self.by_order: dict[str, dict[str, dict[str, dict]]] = collections.defaultdict(
            lambda: collections.defaultdict(dict))
        for event in events:
            order_id = _order_of(event.get("data"))
            if order_id:
                self.by_order[order_id][event["type"]].setdefault(event["id"], event)

    def of(self, order_id: str, event_type: str) -> list[dict]:
        return list(self.by_order.get(order_id, {}).get(event_type, {}).values())

    def last(self, order_id: str) -> dict | None:
        seen = [e for events in self.by_order.get(order_id, {}).values() for e in events.values()]
        return max(seen, key=lambda e: e.get("time") or 0) if seen else None


def _rows(history: History, table: str, key: str = "order_id") -> dict[str, list[dict]]:
    out = collections.defaultdict(list)
    for row in history.tables.get(table, []):
        out[row[key]].append(row)
    return out


def check(history: History) -> Verdict:
    verdict = Verdict(confirmed=len(history.orders))
    wire = _Wire(history.events)
    charges, refunds = _rows(history, "charges"), _rows(history, "refunds")
    reservations = _rows(history, "reservations")
    entries = collections.defaultdict(list)
    for row in history.tables.get("entries", []):
        entries[(row["order_id"], row["kind"])].append(row)
    _check_effects(history, wire, charges, entries, verdict)
    held = _held_in_queues(history.queues)
    for queue, messages in sorted(history.queues.items()):
        if messages:  # the drain waits until every queue is empty: what is left did not drain
            verdict.violations.append(f"{len(messages)} message(s) left in {queue} after the drain"
                                      f"{' (dead-lettered)' if queue.endswith('.dlq') else ''}")
    for order in history.orders:
        order_id = order["order_id"]
        state, missing = _final_state(order_id, wire, charges, refunds, entries)
        if state and not missing:
            verdict.final[state] += 1
            final_events = [e for t in FINAL_TYPES for e in wire.of(order_id, t)]
            if final_events and order.get("sent") is not None:
                verdict.latencies[order_id] = max(e["time"] for e in final_events) - order["sent"]
            continue
        where = {"order_id": order_id, "state": _describe(order_id, wire, charges, refunds, reservations, entries),
                 "missing": missing}
        if order_id in held:
            verdict.stuck.append({**where, "queues": held[order_id]})
        else:
            last = wire.last(order_id)
            where["last_event"] = last["type"] if last else None
            where["next_queue"] = NEXT_QUEUE.get(last["type"]) if last else "payment (never seen on the wire)"
            verdict.lost.append(where)
    _check_stock(history, reservations, verdict)
    _check_ledger(history, charges, refunds, verdict)
    return verdict


def _final_state(order_id, wire, charges, refunds, entries) -> tuple[str | None, list[str]]:
    """The order's final state, and what it still lacks to be in it (empty: it is)."""
    if wire.of(order_id, "payment.failed"):
        return "declined", []
    if wire.of(order_id, "order.cancelled"):
        charged = [row for row in charges.get(order_id, ()) if row.get("status") == "succeeded"]
        if not charged and not wire.of(order_id, "payment.succeeded"):
            # Cancelled before payment charged it (the order saga's payment timeout): payment recorded the
            # cancellation, so the order is never charged; nothing to refund.
            return "cancelled before payment", []
        missing = [what for what, there in (
            ("payment.refunded on the wire", wire.of(order_id, "payment.refunded")),
            ("payment's refund row", refunds.get(order_id)),
            ("the ledger's charge entry", entries.get((order_id, "charge"))),
            ("the ledger's refund entry", entries.get((order_id, "refund")))) if not there]
        return "cancelled", missing
    if wire.of(order_id, "order.shipped"):
        missing = [] if entries.get((order_id, "charge")) else ["the ledger's charge entry"]
        return "shipped", missing
    return None, ["a final event (order.shipped, order.cancelled or payment.failed)"]


def _describe(order_id, wire, charges, refunds, reservations, entries) -> dict:
    """What is known of an order that did not end: its last event on the wire and its rows."""
    last = wire.last(order_id)
    return {"last_event": last["type"] if last else None,
            "charge": charges[order_id][0]["status"] if charges.get(order_id) else None,
            "refunded": bool(refunds.get(order_id)),
            "reservation": reservations[order_id][0]["status"] if reservations.get(order_id) else None,
            "ledger": sorted(kind for (oid, kind) in entries if oid == order_id)}


def _held_in_queues(queues: dict[str, list[dict]]) -> dict[str, list[str]]:
    held = collections.defaultdict(list)
    for queue, messages in sorted(queues.items()):
        for message in messages:
            if message.get("order_id"):
                reason = f" ({message['reason']})" if message.get("reason") else ""
                held[message["order_id"]].append(f"{queue}: {message.get('type')}{reason}")
    return held


def _check_effects(history, wire, charges, entries, verdict) -> None:
    gateway = collections.Counter((g["kind"], g["order_id"]) for g in history.gateway)
    gateway_ids = {(g["kind"], g["order_id"]): g["id"] for g in history.gateway}
    for (kind, order_id), n in sorted(gateway.items()):
        if n > 1:
            verdict.duplicated.append({"order_id": order_id, "what": f"the gateway made {n} {kind}s"})
    for order_id, rows in sorted(charges.items()):
        row = rows[0]
        if row["status"] == "succeeded" and gateway_ids.get(("charge", order_id)) != row["payment_id"]:
            verdict.violations.append(f"order {order_id}: payment recorded {row['payment_id']}, the gateway "
                                      f"charged {gateway_ids.get(('charge', order_id))}")
    for order_id, types in sorted(wire.by_order.items()):
        payment_ids = {e["data"].get("paymentId") for e in types.get("payment.succeeded", {}).values()}
        if len(payment_ids) > 1:
            verdict.duplicated.append({"order_id": order_id,
                                       "what": f"payment.succeeded with {len(payment_ids)} payment ids"})
        if types.get("payment.succeeded") and types.get("payment.failed"):
            verdict.violations.append(f"order {order_id}: both charged and declined on the wire")
        if types.get("inventory.reserved") and types.get("order.cancelled"):
            verdict.violations.append(f"order {order_id}: both reserved and cancelled on the wire")
        for event_type, events in types.items():
            if len(events) > 1:  # a reaction's id derives from its cause's: a new id is a new effect
                verdict.repeated_reactions[event_type] += 1
                verdict.duplicated.append({"order_id": order_id,
                                           "what": f"{event_type} published under {len(events)} ids"})
    for (order_id, kind), rows in sorted(entries.items()):
        if len(rows) > 1:
            verdict.duplicated.append({"order_id": order_id, "what": f"{len(rows)} ledger {kind} entries"})


def _check_stock(history, reservations, verdict) -> None:
    final = {row["sku"]: int(row["quantity"]) for row in history.tables.get("stock", [])}
    taken = collections.Counter()
    items = {o["order_id"]: o["items"] for o in (*history.orders, *history.others)}
    for order_id, rows in reservations.items():
        if rows[0]["status"] == "reserved":
            if order_id not in items:
                verdict.violations.append(f"order {order_id} reserved, but no client placed it")
                continue
            for sku, quantity, *_ in items[order_id]:
                taken[sku] += int(quantity)
    for sku in sorted(set(final) | set(history.stock)):
        have, expected = final.get(sku, 0), history.stock.get(sku, 0) - taken[sku]
        if have < 0:
            verdict.violations.append(f"stock of {sku} is negative: {have}")
        if have != expected:
            verdict.violations.append(f"stock of {sku} is {have}, expected {expected} (initial "
                                      f"{history.stock.get(sku, 0)} less {taken[sku]} reserved)")


def _check_ledger(history, charges, refunds, verdict) -> None:
    users = {o["order_id"]: o["user_id"] for o in (*history.orders, *history.others)}
    by_user = collections.defaultdict(list)
    for row in history.tables.get("entries", []):
        by_user[row["user_id"]].append(row)
        if users.get(row["order_id"], row["user_id"]) != row["user_id"]:
            verdict.violations.append(f"ledger entry of order {row['order_id']} under user {row['user_id']}, "
                                      f"placed by {users[row['order_id']]}")
    charged = {(r["order_id"]) for r in history.tables.get("entries", []) if r["kind"] == "charge"}
    for row in history.tables.get("entries", []):
        if row["kind"] == "refund" and row["order_id"] not in charged:
            verdict.violations.append(f"ledger: refund of order {row['order_id']} without its charge")
    balances = {row["user_id"]: Decimal(row["balance"]) for row in history.tables.get("balances", [])}
    expected = collections.defaultdict(Decimal)
    for order_id, rows in charges.items():
        if rows[0]["status"] == "succeeded" and order_id in users:
            expected[users[order_id]] += Decimal(rows[0]["amount"])
            if refunds.get(order_id):
                expected[users[order_id]] -= Decimal(rows[0]["amount"])
    for user in sorted(set(by_user) | set(balances) | set(expected)):
        balance = balances.get(user, Decimal(0))
        problem = chain_problem(by_user.get(user, []), balance)
        if problem:
            verdict.violations.append(f"ledger order of user {user}: {problem}")
        if balance != expected[user]:
            verdict.violations.append(f"ledger balance of user {user} is {balance}, payment's charges less "
                                      f"refunds make {expected[user]}")


def chain_problem(entries: list[dict], final: Decimal) -> str | None:
    """Why ``entries`` (amount, balance after it) cannot be one sequence from 0 to ``final``; None if they can.

    Each entry is an edge from the balance before it (balance - amount) to the balance after it; the
    entries were applied one after another exactly when these edges form one trail from 0 to ``final``
    (an Eulerian trail: every balance entered as often as left, but 0 left once more and ``final``
    entered once more, and all of them connected)."""
    if not entries:
        return None if final == 0 else f"no entries, but a balance of {final}"
    out_minus_in = collections.Counter()
    neighbours = collections.defaultdict(set)
    for entry in entries:
        after = Decimal(entry["balance"])
        before = after - Decimal(entry["amount"])
        out_minus_in[before] += 1
        out_minus_in[after] -= 1
        neighbours[before].add(after)
        neighbours[after].add(before)
    start = Decimal(0)
    want = collections.Counter()
    if start != final:
        want[start], want[final] = 1, -1
    wrong = {b: out_minus_in.get(b, 0) for b in set(out_minus_in) | set(want) if out_minus_in.get(b, 0) != want.get(b, 0)}
    if wrong:
        first = sorted(wrong.items())[:3]
        return (f"running balances do not chain from 0 to {final} (balances left more or less often than "
                f"reached: {', '.join(f'{b}: {n:+d}' for b, n in first)})")
    seen, todo = {start}, [start]
    while todo:
        for nxt in neighbours[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    if set(neighbours) - seen:
        return "running balances split into chains that do not meet"
    return None
