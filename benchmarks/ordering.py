"""The price of ordering per key: a no-op worker ordered by a key (its events spread over partitions,
one at a time in each) beside the same worker unordered, at the default concurrency, in one run.

Both consume ``n`` pre-loaded events over 1,000 keys; the ordered one's go through its consistent-hash
exchange (published with their partition key header, as every eda publisher sends them).
"""

import statistics

from marshmallow import fields

from benchmarks import eda_side
from benchmarks.bench import Bench, wait_for
from eda import EventData, Worker, contract, handles
from eda.connection import open_connection
from eda.contracts.envelope import Event, encode
from eda.fields import Id
from eda.publishing.publisher import Publisher

KEYS = 1000


@contract("bench.account.changed", description="A benchmark event with a partition key.", key="account_id")
class AccountChanged(EventData):
    account_id = Id(required=True)
    seq = fields.Integer(required=True, strict=True)


class Accounts(Worker):
    """Does nothing with each event: what is left is eda's cost, unordered."""

    name = "bench-accounts"

    @handles("bench.account.changed")
    def ignore(self, event, ctx):
        pass


class OrderedAccounts(Accounts):
    """The same worker, ordered by account: partitions, one event at a time in each."""

    name = "bench-accounts-ordered"
    ordered_by = "account_id"


def account_event(i: int) -> Event:
    return Event("bench.account.changed", {"account_id": f"acct-{i % KEYS:04d}", "seq": i // KEYS}, "eda/bench")


def unordered(bench: Bench, n: int) -> float:
    queue = bench.worker_queue(Accounts.name, Accounts.handlers)
    bench.preload(queue, account_event, n)
    try:
        return eda_side.run_worker(bench.settings, Accounts, n)
    finally:
        bench.topology.delete_worker(bench.channel, Accounts.name)


def ordered(bench: Bench, n: int) -> float:
    queues = bench.topology.declare_ordered(bench.channel, OrderedAccounts.name, OrderedAccounts.handlers)
    conn = open_connection(bench.settings)
    try:
        publisher = Publisher(conn)
        for i in range(n):  # through the events exchange: the partition key header picks the partition
            event = account_event(i)
            publisher.send_event(event, bench.topology.events.name, body=encode(event), mandatory=True)
            if publisher.in_flight >= publisher.window:
                publisher.wait(until=publisher.window // 2)
        publisher.wait()
    finally:
        conn.release()
    wait_for(lambda: sum(bench.depth(q) for q in queues) >= n, 60, f"{n} events in the partitions")
    try:
        return eda_side.run_worker(bench.settings, OrderedAccounts, n)
    finally:
        bench.topology.delete_ordered(bench.channel, OrderedAccounts.name, partitions=len(queues))


def ordered_vs_unordered(bench: Bench, n: int, rounds: int = 3) -> dict:
    """Events per second of the no-op worker unordered and ordered over the default partitions,
    alternately for ``rounds`` rounds; the medians are the figures (one run of each moved the ratio
    from 0.32 to 0.57 on a quiet machine), every run is kept beside them."""
    eda_side.worker_logs(bench.settings)
    runs = {"unordered": [], "ordered": []}
    for _ in range(rounds):
        runs["unordered"].append(unordered(bench, n))
        runs["ordered"].append(ordered(bench, n))
    return {"n": n, "partitions": bench.topology.partitions, "concurrency": bench.settings.concurrency,
            "rounds": rounds, "runs": runs, "unordered": statistics.median(runs["unordered"]),
            "ordered": statistics.median(runs["ordered"])}

