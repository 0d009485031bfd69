"""The chaos checker on made-up histories: a healthy run passes, and each kind of violation is found and
named (lost, stuck, duplicated, negative or miscounted stock, the ledger's order per user)."""

import copy
import itertools
from decimal import Decimal

import pytest

from tests.chaos.checker import History, chain_problem, check

_ids = itertools.count()


def event(type_, order_id, t, **data):
    return {"id": f"e{next(_ids)}", "type": type_, "time": t, "data": {"orderId": order_id, **data}}


class Shop:
    """A made-up history, built order by order as the shop's workers would leave it."""

    def __init__(self):
        self.history = History(orders=[], stock={"A": 10, "S": 1}, events=[], tables={
            "charges": [], "refunds": [], "reservations": [], "stock": [{"sku": "A", "quantity": 10},
                                                                         {"sku": "S", "quantity": 1}],
            "entries": [], "balances": []}, gateway=[], queues={})
        self.balances = {}

    def _place(self, order_id, user, items, amount, t):
        self.history.orders.append({"order_id": order_id, "user_id": user, "items": items, "total": amount,
                                    "sent": t, "confirmed": t + 0.01})
        self.history.events.append(event("order.placed", order_id, t))

    def _charge(self, order_id, user, amount, t):
        payment_id = f"pay-{order_id}"
        self.history.gateway.append({"kind": "charge", "order_id": order_id, "id": payment_id})
        self.history.tables["charges"].append({"order_id": order_id, "status": "succeeded", "payment_id": payment_id,
                                               "reason": None, "amount": amount})
        self.history.events.append(event("payment.succeeded", order_id, t + 0.1, paymentId=payment_id))
        self._ledger(payment_id, "charge", order_id, user, Decimal(amount))

    def _ledger(self, payment_id, kind, order_id, user, amount):
        balance = self.balances.get(user, Decimal("0.00")) + amount
        self.balances[user] = balance
        self.history.tables["entries"].append({"payment_id": payment_id, "kind": kind, "order_id": order_id,
                                               "user_id": user, "amount": str(amount), "balance": str(balance)})
        self.history.tables["balances"] = [{"user_id": u, "balance": str(b)} for u, b in self.balances.items()]

    def _take(self, sku, quantity):
        row = next(r for r in self.history.tables["stock"] if r["sku"] == sku)
        row["quantity"] -= quantity

    def shipped(self, order_id, user="u1", sku="A", quantity=1, amount="10.00", t=0.0):
        self._place(order_id, user, [[sku, quantity, amount]], amount, t)
        self._charge(order_id, user, amount, t)
        self._take(sku, quantity)
        self.history.tables["reservations"].append({"order_id": order_id, "status": "reserved"})
        self.history.events += [event("inventory.reserved", order_id, t + 0.2),
                                event("order.shipped", order_id, t + 0.3)]
        return self

    def cancelled(self, order_id, user="u1", amount="5.00", t=0.0):
        self._place(order_id, user, [["S", 1, amount]], amount, t)
        self._charge(order_id, user, amount, t)
        self.history.tables["reservations"].append({"order_id": order_id, "status": "cancelled"})
        self.history.gateway.append({"kind": "refund", "order_id": order_id, "id": f"ref-{order_id}"})
        self.history.tables["refunds"].append({"order_id": order_id, "refund_id": f"ref-{order_id}"})
        self._ledger(f"pay-{order_id}", "refund", order_id, user, -Decimal(amount))
        self.history.events += [event("order.cancelled", order_id, t + 0.2),
                                event("payment.refunded", order_id, t + 0.4, paymentId=f"pay-{order_id}")]
        return self

    def declined(self, order_id, user="u2", t=0.0):
        self._place(order_id, user, [["A", 1, "20000.00"]], "20000.00", t)
        self.history.tables["charges"].append({"order_id": order_id, "status": "declined", "payment_id": None,
                                               "reason": "over the limit", "amount": "20000.00"})
        self.history.events.append(event("payment.failed", order_id, t + 0.1))
        return self

    def without(self, order_id, *types):
        self.history.events = [e for e in self.history.events
                               if not (e["data"]["orderId"] == order_id and e["type"] in types)]
        return self


def healthy() -> Shop:
    return Shop().shipped("o1", t=1.0).shipped("o2", user="u2", t=2.0).cancelled("o3", t=3.0).declined("o4", t=4.0)


def test_a_healthy_history_passes_with_each_order_final_and_its_latency():
    verdict = check(healthy().history)
    assert verdict.ok, verdict.as_dict()
    assert verdict.final == {"shipped": 2, "cancelled": 1, "declined": 1}
    assert verdict.latencies["o1"] == pytest.approx(0.3) and verdict.latencies["o3"] == pytest.approx(0.4)


def test_an_order_whose_chain_stopped_with_nothing_holding_it_is_lost_with_its_last_known_place():
    shop = healthy().without("o1", "inventory.reserved", "order.shipped")
    verdict = check(shop.history)
    assert not verdict.ok
    [lost] = verdict.lost
    assert lost["order_id"] == "o1"
    assert lost["last_event"] == "payment.succeeded" and lost["next_queue"] == "inventory, ledger"
    assert lost["state"]["charge"] == "succeeded" and lost["state"]["reservation"] == "reserved"
    assert verdict.stuck == [] and verdict.final["shipped"] == 1


def test_an_order_never_seen_on_the_wire_is_lost_before_payment():
    shop = healthy()
    shop.history.orders.append({"order_id": "o9", "user_id": "u1", "items": [["A", 1, "1.00"]], "total": "1.00",
                                "sent": 9.0, "confirmed": 9.1})
    [lost] = check(shop.history).lost
    assert lost["order_id"] == "o9" and lost["last_event"] is None
    assert lost["next_queue"] == "payment (never seen on the wire)"


def test_an_order_whose_event_waits_in_a_dead_letter_queue_is_stuck_there_with_the_reason():
    shop = healthy().without("o2", "inventory.reserved", "order.shipped")
    shop.history.queues["chaos.inventory.dlq"] = [{"id": "x", "type": "payment.succeeded", "order_id": "o2",
                                                   "reason": "StoreUnavailable"}]
    verdict = check(shop.history)
    [stuck] = verdict.stuck
    assert stuck["order_id"] == "o2"
    assert stuck["queues"] == ["chaos.inventory.dlq: payment.succeeded (StoreUnavailable)"]
    assert verdict.lost == []
    assert "1 message(s) left in chaos.inventory.dlq after the drain (dead-lettered)" in verdict.violations


def test_a_cancelled_order_without_its_refund_in_the_ledger_is_not_final():
    shop = healthy()
    shop.history.tables["entries"] = [e for e in shop.history.tables["entries"]
                                      if not (e["order_id"] == "o3" and e["kind"] == "refund")]
    verdict = check(shop.history)
    [lost] = verdict.lost
    assert lost["order_id"] == "o3" and lost["missing"] == ["the ledger's refund entry"]


def test_an_order_charged_twice_by_the_gateway_is_duplicated():
    shop = healthy()
    shop.history.gateway.append({"kind": "charge", "order_id": "o1", "id": "pay-o1-again"})
    verdict = check(shop.history)
    assert {"order_id": "o1", "what": "the gateway made 2 charges"} in verdict.duplicated


def test_a_second_payment_id_on_the_wire_for_one_order_is_a_duplicated_charge():
    shop = healthy()
    shop.history.events.append(event("payment.succeeded", "o2", 2.5, paymentId="pay-other"))
    verdict = check(shop.history)
    assert {"order_id": "o2", "what": "payment.succeeded with 2 payment ids"} in verdict.duplicated


def test_a_ledger_entry_applied_twice_is_duplicated_and_breaks_the_balance():
    shop = healthy()
    entry = next(e for e in shop.history.tables["entries"] if e["order_id"] == "o1")
    shop.history.tables["entries"].append({**entry, "payment_id": "pay-o1-b", "balance": "25.00"})
    verdict = check(shop.history)
    assert {"order_id": "o1", "what": "2 ledger charge entries"} in verdict.duplicated
    assert any(v.startswith("ledger order of user u1") for v in verdict.violations)


def test_copies_of_one_event_are_one_event():
    shop = healthy()
    shipped = next(e for e in shop.history.events if e["type"] == "order.shipped" and e["data"]["orderId"] == "o1")
    shop.history.events.append(copy.deepcopy(shipped))  # the same id again: a resend, a re-published reaction
    verdict = check(shop.history)
    assert verdict.ok, verdict.as_dict()
    assert verdict.final["shipped"] == 2


def test_an_event_of_an_order_under_a_second_id_is_a_duplicated_effect():
    # Given order o2 shipped under a second id (its reservation handled again gave a new reaction)
    shop = healthy()
    shop.history.events.append(event("order.shipped", "o2", 2.9))
    verdict = check(shop.history)
    assert {"order_id": "o2", "what": "order.shipped published under 2 ids"} in verdict.duplicated
    assert verdict.repeated_reactions == {"order.shipped": 1}


def test_stock_below_zero_or_moved_other_than_by_reserved_orders_is_a_violation():
    shop = healthy()
    next(r for r in shop.history.tables["stock"] if r["sku"] == "S")["quantity"] = -1
    next(r for r in shop.history.tables["stock"] if r["sku"] == "A")["quantity"] = 7  # one unit too many taken
    violations = check(shop.history).violations
    assert "stock of S is negative: -1" in violations
    assert "stock of A is 7, expected 8 (initial 10 less 2 reserved)" in violations


def test_an_order_cancelled_before_payment_charged_it_is_final_without_a_refund():
    shop = Shop()
    shop._place("o9", "u1", [["S", 1, "5.00"]], "5.00", 0.0)  # the order saga's payment timeout cancels it
    shop.history.tables["charges"].append({"order_id": "o9", "status": "cancelled", "payment_id": None,
                                           "reason": "cancelled before payment", "amount": "5.00"})
    shop.history.events.append(event("order.cancelled", "o9", 1.0))
    verdict = check(shop.history)
    assert verdict.final == {"cancelled before payment": 1} and verdict.lost == [] and verdict.ok


def test_an_order_cancelled_after_a_charge_still_needs_its_refund():
    shop = Shop()
    shop._place("o8", "u1", [["S", 1, "5.00"]], "5.00", 0.0)
    shop._charge("o8", "u1", "5.00", 0.0)
    shop.history.events.append(event("order.cancelled", "o8", 1.0))
    verdict = check(shop.history)
    assert verdict.final == {} and verdict.lost[0]["missing"][0] == "payment.refunded on the wire"


def test_an_order_both_reserved_and_cancelled_is_a_violation():
    shop = healthy()
    shop.history.events.append(event("order.cancelled", "o1", 1.5))
    assert "order o1: both reserved and cancelled on the wire" in check(shop.history).violations


def test_a_lost_update_in_the_ledger_breaks_the_chain_of_running_balances():
    # Given two charges of one user applied at the same moment: both read 0, the last write wins
    shop = Shop().shipped("o1", amount="10.00").shipped("o2", amount="7.00", t=1.0)
    entries = shop.history.tables["entries"]
    entries[1]["balance"] = "7.00"
    shop.history.tables["balances"] = [{"user_id": "u1", "balance": "7.00"}]
    violations = check(shop.history).violations
    assert any(v.startswith("ledger order of user u1: running balances do not chain") for v in violations)
    assert "ledger balance of user u1 is 7.00, payment's charges less refunds make 17.00" in violations


def test_a_refund_without_its_charge_in_the_ledger_is_an_order_violation():
    shop = healthy()
    shop.history.tables["entries"] = [e for e in shop.history.tables["entries"]
                                      if not (e["order_id"] == "o3" and e["kind"] == "charge")]
    assert "ledger: refund of order o3 without its charge" in check(shop.history).violations


def test_payment_recording_another_charge_than_the_gateway_made_is_a_violation():
    shop = healthy()
    shop.history.tables["charges"][0]["payment_id"] = "pay-elsewhere"
    assert any("payment recorded pay-elsewhere, the gateway charged pay-o1" in v for v in check(shop.history).violations)


def test_running_balances_chain_in_any_order_they_were_listed():
    entries = [{"amount": "-5.00", "balance": "5.00"}, {"amount": "10.00", "balance": "10.00"},
               {"amount": "3.00", "balance": "8.00"}]
    assert chain_problem(entries, Decimal("8.00")) is None
    assert chain_problem(entries, Decimal("5.00")) is not None
    assert chain_problem([], Decimal("0")) is None
    assert chain_problem([], Decimal("1")) == "no entries, but a balance of 1"
