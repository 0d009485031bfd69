"""Ordering per key: an ordered worker's events reach it in order per key, across instances, a SIGKILL,
retries and other AMQP clients (tests/integration/ordering_app.py is the worker)."""

import json
import signal
import subprocess
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone

import pika
import pytest

from eda import Producer, Settings
from tests.support import eda_command, handled, handled_lines, partitions_deleted, wait_until

pytestmark = pytest.mark.integration

APP = "tests.integration.ordering_app"
ACCOUNTS, SEQS = 50, 40  # 2,000 events


@pytest.fixture
def record(tmp_path, broker_url, namespace):
    """The file the worker's instances append each handled event to, its partitions deleted afterwards."""
    with partitions_deleted(broker_url, namespace, "accounts"):
        yield tmp_path / "handled.txt"


def status_json(env, **extra) -> dict:
    result = subprocess.run(eda_command() + ["status", "accounts", "--json"], env={**env, **extra},
                            capture_output=True, text=True, timeout=60, check=False)
    return json.loads(result.stdout)


def partitions(doc) -> list[dict]:
    return [q for q in doc["queues"] if q["kind"] == "partition"]


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_two_instances_handle_each_accounts_events_in_order_through_a_stop(stop, eda, env, broker, namespace, record,
                                                                           tmp_path):
    # Given two instances of an ordered worker whose handlers sleep a little at random and fail
    # transiently now and then (each event at most once per process), retried in place
    app = dict(EDA_APP=APP, ORDERING_RECORD=record, ORDERING_MAX_SLEEP="0.004", ORDERING_FAIL_RATE="0.03",
               EDA_RETRY_DELAYS="100ms,200ms,400ms")
    first = eda.worker("accounts", **app)
    second = eda.worker("accounts", **app)
    doc = status_json(env, EDA_APP=APP)
    assert len(partitions(doc)) == 8
    assert all(p["consumers"] == 2 and p["active"] for p in partitions(doc)), doc  # one active, one standby
    # When 2,000 events over 50 accounts, each with its per-account sequence number, are published in order
    lines = tmp_path / "events.jsonl"
    lines.write_text("\n".join(json.dumps({"accountId": f"acct-{a:02}", "seq": s})
                               for s in range(1, SEQS + 1) for a in range(ACCOUNTS)))
    publisher = eda.start("publish", "account-changed", "--file", str(lines), EDA_APP=APP)
    # and the instance handling them is killed with SIGKILL mid-way (or stopped with SIGTERM: it finishes
    # what runs, and what it holds unstarted returns to the partitions in order when it disconnects)
    wait_until(lambda: len(handled_lines(record)) >= 300, timeout=240, message="300 events handled")
    counts = defaultdict(int)
    for pid, _, _ in handled_lines(record):
        counts[pid] += 1
    active = max(counts, key=counts.get)
    victim, survivor = (first, second) if first.proc.pid == active else (second, first)
    assert victim.proc.pid == active, f"the handled events came from {dict(counts)}"
    victim.send(stop)
    assert victim.wait(60) == (0 if stop == signal.SIGTERM else -signal.SIGKILL)
    assert publisher.wait(240) == 0, publisher.output
    # Then the other instance takes every partition over and every event is handled
    expected = {(f"acct-{a:02}", s) for a in range(ACCOUNTS) for s in range(1, SEQS + 1)}
    wait_until(lambda: {(a, s) for _, a, s in handled_lines(record)} >= expected, timeout=300,
               message="every event handled")
    assert survivor.proc.poll() is None
    assert survivor.proc.pid in {pid for pid, _, _ in handled_lines(record)}
    # and per account the sequence numbers handled go up one by one: a redelivery after the kill may
    # repeat the last one handled, never go back further, and none is missing
    by_account = defaultdict(list)
    for _, account, seq in handled_lines(record):
        by_account[account].append(seq)
    assert len(by_account) == ACCOUNTS
    for account, seqs in by_account.items():
        assert seqs[0] == 1, (account, seqs)
        for before, after in zip(seqs, seqs[1:]):
            assert after in (before, before + 1), f"{account}: {before} then {after} in {seqs}"
        assert seqs[-1] == SEQS, (account, seqs)
    assert len(handled_lines(record)) - len(expected) <= 8  # at most the one in flight per partition again
    assert broker.depth(f"{namespace}.accounts.dlq") == 0
    retried = lambda r: str(r.get("message", "")).startswith("failed; retrying in place")  # noqa: E731
    assert first.count(retried) + second.count(retried) >= 1  # the transient failures were retried in place
    doc = status_json(env, EDA_APP=APP)
    assert all(p["consumers"] == 1 and p["active"] and p["messages"] == 0 for p in partitions(doc)), doc



def test_sigterm_finishes_the_running_handlers_and_starts_none_of_those_waiting(eda, broker, namespace, record):
    # Given an ordered worker with two handler threads whose handlers take 2 s each
    worker = eda.worker("accounts", EDA_APP=APP, ORDERING_RECORD=record, ORDERING_SLEEP="2", EDA_CONCURRENCY="2")
    # When one event of each of 16 accounts is published (spread over the partitions), and SIGTERM
    # comes while the first two run
    eda.publish("account-changed", *({"accountId": f"acct-t{a:02}", "seq": 1} for a in range(16)), EDA_APP=APP)
    waiting = lambda: sum(broker.depth(f"{namespace}.accounts.p{p}") for p in range(8))  # noqa: E731 - not delivered
    wait_until(lambda: waiting() <= 14, timeout=30, message="events delivered to the worker")
    time.sleep(0.5)
    worker.send(signal.SIGTERM)
    # Then the worker exits 0 once the two running handlers finished: the events handed to its threads
    # but not started were not run after the signal (they return to their partitions, in order)
    assert worker.wait(30) == 0
    assert len(handled_lines(record)) == 2, handled_lines(record)
    wait_until(lambda: waiting() == 14, timeout=30, message="14 events back in their partitions")


def test_a_failing_event_is_retried_in_place_then_dead_lettered_and_its_partition_goes_on(eda, broker, namespace,
                                                                                          record):
    # Given an ordered worker whose handler always fails on acct-p:2
    worker = eda.worker("accounts", EDA_APP=APP, ORDERING_RECORD=record, ORDERING_POISON="acct-p:2",
                        EDA_RETRY_DELAYS="300ms,300ms")
    # When acct-p's events 1, 2 and 3 are published
    ids = eda.publish("account-changed", *({"accountId": "acct-p", "seq": s} for s in (1, 2, 3)), EDA_APP=APP)
    # Then 1 and 3 are handled, in that order
    wait_until(lambda: [s for _, a, s in handled_lines(record) if a == "acct-p"] == [1, 3], timeout=60,
               message="acct-p 1 and 3 handled")
    # and 2 was tried three times in place (no retry queue: a copy there would come back behind 3), then
    # dead-lettered with its reason, before 3 started
    records = worker.records
    position = {id_: i for i, r in enumerate(records) for id_ in [r.get("event_id")] if id_}
    retries = [i for i, r in enumerate(records) if r.get("event_id") == ids[1]
               and str(r.get("message")).startswith("failed; retrying in place")]
    dead = next(i for i, r in enumerate(records) if r.get("event_id") == ids[1]
                and str(r.get("message")).startswith("dead-lettered"))
    third = next(i for i, r in enumerate(records) if r.get("event_id") == ids[2] and handled()(r))
    assert len(retries) == 2 and max(retries) < dead < third, position
    [letter] = broker.dead_letters("accounts")
    assert letter.headers["eda-exception-message"] == "acct-p:2 always fails"
    assert letter.headers["eda-retry-count"] == 2
    assert letter.headers["eda-partition-key"] == "acct-p"
    assert not broker.exists(f"{namespace}.accounts.retry.300ms")
    # When the cause is fixed (a worker without the poison) and the dead event replayed
    worker.send(signal.SIGTERM)
    assert worker.wait(30) == 0
    code, output = eda.run("dlq", "replay", "accounts", EDA_APP=APP)
    assert code == 0 and "replayed 1 event to worker accounts" in output, output
    eda.worker("accounts", EDA_APP=APP, ORDERING_RECORD=record)
    # Then it goes through its key's partition and is handled
    wait_until(lambda: [s for _, a, s in handled_lines(record) if a == "acct-p"] == [1, 3, 2], timeout=60,
               message="acct-p 2 handled after its replay")
    assert broker.depth(f"{namespace}.accounts.dlq") == 0


def test_events_from_another_amqp_client_with_the_documented_header_land_in_their_keys_partition(
        eda, broker, broker_url, namespace, record):
    # Given an ordered worker's partitions declared, no instance running
    code, output = eda.run("topology", "declare", EDA_APP=APP)
    assert code == 0, output
    accounts = [f"acct-{uuid.uuid4().hex[:6]}" for _ in range(16)]
    # and one event per account published by eda
    eda.publish("account-changed", *({"accountId": a, "seq": 1} for a in accounts), EDA_APP=APP)
    # When a client that knows only the wire contract (pika) publishes each account's next event with
    # the eda-partition-key header
    connection = pika.BlockingConnection(pika.URLParameters(broker_url.rstrip("/") + "/%2F"))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for account in accounts:
            event_id = str(uuid.uuid4())
            body = {"specversion": "1.0", "id": event_id, "source": "legacy-bank", "type": "account.changed",
                    "time": datetime.now(timezone.utc).isoformat(), "datacontenttype": "application/json",
                    "data": {"accountId": account, "seq": 2}}
            channel.basic_publish(f"{namespace}.events", "account.changed", json.dumps(body).encode(),
                                  pika.BasicProperties(content_type="application/cloudevents+json", delivery_mode=2,
                                                       message_id=event_id, type="account.changed",
                                                       headers={"eda-partition-key": account}),
                                  mandatory=True)
    finally:
        connection.close()
    # Then each lands in the partition that holds the same account's event from eda
    where = defaultdict(dict)  # account -> {source: partition}
    for index in range(8):
        queue = f"{namespace}.accounts.p{index}"
        for message in broker.peek(queue):
            event = json.loads(message.body)
            where[event["data"]["accountId"]][event["source"]] = queue
    assert set(where) == set(accounts)
    for account in accounts:
        assert where[account]["legacy-bank"] == where[account]["eda/cli"], (account, where[account])
    assert len({w["eda/cli"] for w in where.values()}) > 1  # the accounts are spread over partitions
    # and the worker, once started, handles each account's two events in order
    eda.worker("accounts", EDA_APP=APP, ORDERING_RECORD=record)
    wait_until(lambda: len(handled_lines(record)) >= 2 * len(accounts), timeout=60, message="every event handled")
    by_account = defaultdict(list)
    for _, account, seq in handled_lines(record):
        by_account[account].append(seq)
    assert all(by_account[a] == [1, 2] for a in accounts), dict(by_account)


def test_the_shops_ledger_applies_each_users_refund_after_its_charge(eda, broker, broker_url, namespace, make_order):
    # Given the shop's payment, inventory and ledger workers, and stock for one order
    worker = eda.worker("payment", "inventory", "ledger")
    spy = broker.spy("payment.#")
    eda.publish("stock-replenished", {"sku": "SKU-1", "quantity": 1})
    # When two users order, the second when the stock is gone
    eda.publish("order-placed", make_order("o-first", amount="30.00", userId="u-1"))
    worker.wait_for_log(lambda r: r.get("message") == "charge of u-1 30.00: balance 30.00", timeout=60,
                        what="u-1's charge in the ledger")
    eda.publish("order-placed", make_order("o-second", amount="20.00", userId="u-2"))
    # Then the ledger applies u-2's charge, then its refund (the order was cancelled for want of stock)
    worker.wait_for_log(lambda r: r.get("message") == "refund of u-2 20.00: balance 0.00", timeout=60,
                        what="u-2's refund in the ledger")
    lines = [r.get("message") for r in worker.records if r.get("worker") == "ledger" and r.get("user_id") == "u-2"]
    assert lines == ["charge of u-2 20.00: balance 20.00", "refund of u-2 20.00: balance 0.00"]
    # and payment's reactions carried the user id in the partition key header
    for event in spy.of_type("payment.succeeded") + spy.of_type("payment.refunded"):
        assert spy.message_of(event["id"]).headers["eda-partition-key"] == event["data"]["userId"]
    # When an application publishes a charge with the Producer API
    with Producer(Settings(broker_url=broker_url, namespace=namespace), source="test/app") as producer:
        sent = producer.publish("payment-succeeded", {"order_id": "o-third", "payment_id": "p-3", "amount": "5.00",
                                                      "user_id": "u-3", "items": [{"sku": "SKU-1", "quantity": 1}]})
    # Then it carries the header too, and the ledger applies it
    spy.wait_for("payment.succeeded", where=lambda e: e["id"] == sent.id)
    assert spy.message_of(sent.id).headers["eda-partition-key"] == "u-3"
    worker.wait_for_log(lambda r: r.get("message") == "charge of u-3 5.00: balance 5.00", timeout=60,
                        what="u-3's charge in the ledger")
    assert broker.depth(f"{namespace}.ledger.dlq") == 0


def test_an_ordered_workers_consuming_line_names_its_partition_queues(eda, namespace):
    worker = eda.worker("ledger")
    line = worker.wait_for_log(lambda r: r.get("message") == "consuming" and r.get("worker") == "ledger")
    assert line["queue"] == f"{namespace}.ledger.p0..{namespace}.ledger.p7"  # not the work queue it has not


def test_the_shops_ledger_holds_a_refund_that_overtook_its_charge_until_the_charge_comes(eda, broker, namespace):
    # Given the ledger alone (while a quorum queue's leader moves, a charge's copy for the ledger may be
    # enqueued after the refund that inventory's copy of it led to)
    worker = eda.worker("ledger")
    # When the refund comes first
    eda.publish("payment-refunded", {"orderId": "o-late", "paymentId": "p-late", "amount": "20.00", "userId": "u-9"})
    worker.wait_for_log(lambda r: r.get("message") == "refund of order o-late came before its charge: held until "
                        "the charge comes", timeout=60, what="the refund held")
    # and then its charge
    eda.publish("payment-succeeded", {"orderId": "o-late", "paymentId": "p-late", "amount": "20.00", "userId": "u-9",
                                      "items": [{"sku": "SKU-1", "quantity": 1}]})
    # Then the ledger applies the charge, then the refund, and nothing is dead-lettered
    worker.wait_for_log(lambda r: r.get("message") == "refund of u-9 20.00: balance 0.00", timeout=60,
                        what="u-9's refund in the ledger")
    lines = [r.get("message") for r in worker.records if r.get("worker") == "ledger" and r.get("user_id") == "u-9"]
    assert lines == ["charge of u-9 20.00: balance 20.00", "refund of u-9 20.00: balance 0.00"]
    assert broker.depth(f"{namespace}.ledger.dlq") == 0


def test_fewer_partitions_take_the_extra_ones_off_the_ring_and_drain_them(eda, broker, namespace, record):
    # Given an ordered worker's six partitions holding events, no instance running
    code, output = eda.run("topology", "declare", EDA_APP=APP, EDA_PARTITIONS=6)
    assert code == 0, output
    accounts = [f"acct-{i:02}" for i in range(30)]
    eda.publish("account-changed", *({"accountId": a, "seq": 1} for a in accounts), EDA_APP=APP)
    partitions = [f"{namespace}.accounts.p{i}" for i in range(6)]
    assert sum(broker.depth(q) for q in partitions[3:]) > 0
    # When the worker starts with three partitions
    worker = eda.worker("accounts", EDA_APP=APP, EDA_PARTITIONS=3, ORDERING_RECORD=record)
    # Then it says which partitions are left over, and handles their events too
    worker.wait_for_log(lambda r: str(r.get("message", "")).startswith("partitions left from a larger EDA_PARTITIONS"))
    wait_until(lambda: len(handled_lines(record)) >= len(accounts), timeout=60, message="every event handled")
    # and new events go to the three partitions only
    worker.send(signal.SIGTERM)
    assert worker.wait(30) == 0
    eda.publish("account-changed", *({"accountId": a, "seq": 2} for a in accounts), EDA_APP=APP)
    assert [broker.depth(q) for q in partitions[3:]] == [0, 0, 0]
    assert sum(broker.depth(q) for q in partitions[:3]) == len(accounts)
