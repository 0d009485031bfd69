"""Ordering by flow on RabbitMQ: a worker with ``ordered_by = eda.FLOW`` gets each flow's events (one
correlation id) in order across two instances and a SIGKILL, whatever key each contract names
(tests/integration/flows_app.py is the worker)."""

import signal
from collections import defaultdict

import pytest

from eda import Producer, Settings
from eda.topology import Topology
from tests.registry_scope import contracts_of
from tests.support import handled_lines, partitions_deleted, wait_until

pytestmark = pytest.mark.integration

APP = "tests.integration.flows_app"
FLOWS, STEPS = 40, 20  # 800 events


@pytest.fixture(scope="module", autouse=True)
def flows_contracts():
    """flows_app's contracts, registered in this process for this module's Producer only."""
    with contracts_of(APP):
        yield


@pytest.fixture
def record(tmp_path, broker_url, namespace):
    """The file the worker's instances append each handled event to, its partitions deleted afterwards."""
    with partitions_deleted(broker_url, namespace, "tracker"):
        yield tmp_path / "handled.txt"


def test_two_instances_handle_each_flows_events_in_order_through_a_sigkill(eda, broker, broker_url, namespace,
                                                                           record):
    # Given two instances of a worker ordered by the flow, whose handlers sleep a little at random
    app = dict(EDA_APP=APP, FLOWS_RECORD=record, FLOWS_MAX_SLEEP="0.004")
    first = eda.worker("tracker", **app)
    second = eda.worker("tracker", **app)
    # When 40 flows publish 20 events each, packed and sent alternating, each event keyed by another
    # warehouse or carrier (ordered by key, one flow's events would spread over the partitions)
    settings = Settings(broker_url=broker_url, namespace=namespace)
    with Producer(settings, source="test/flows") as producer:
        for step in range(1, STEPS + 1):
            for flow in range(FLOWS):
                event = "parcel.packed" if step % 2 else "parcel.sent"
                key = {"warehouse_id": f"w-{step}"} if step % 2 else {"carrier_id": f"c-{step}"}
                producer.publish(event, {"parcel_id": f"parcel-{flow}", "step": step, **key},
                                 correlation_id=f"flow-{flow:02}")
            if step == STEPS // 2:
                # and the instance handling them is killed mid-way
                wait_until(lambda: len(handled_lines(record)) >= 100, timeout=120, message="100 events handled")
                counts = defaultdict(int)
                for pid, _, _ in handled_lines(record):
                    counts[pid] += 1
                active = max(counts, key=counts.get)
                victim = first if first.proc.pid == active else second
                victim.send(signal.SIGKILL)
                assert victim.wait(30) == -signal.SIGKILL
    # Then every event is handled, and per flow the steps go up one by one: a redelivery after the kill
    # may repeat the last one handled, never go back further
    expected = {(f"flow-{f:02}", s) for f in range(FLOWS) for s in range(1, STEPS + 1)}
    wait_until(lambda: {(f, s) for _, f, s in handled_lines(record)} >= expected, timeout=240,
               message="every event handled")
    by_flow = defaultdict(list)
    for _, flow, step in handled_lines(record):
        by_flow[flow].append(step)
    assert len(by_flow) == FLOWS
    for flow, steps in by_flow.items():
        assert steps[0] == 1, (flow, steps)
        for before, after in zip(steps, steps[1:]):
            assert after in (before, before + 1), f"{flow}: {before} then {after} in {steps}"
        assert steps[-1] == STEPS, (flow, steps)
    assert broker.depth(f"{namespace}.tracker.dlq") == 0


def test_a_worker_whose_exchange_was_declared_for_a_key_exits_2_naming_it(eda, broker, namespace, record):
    # Given the worker's partitions exchange declared as a worker ordered by a key declares it
    Topology(namespace).partitions_exchange("tracker", "warehouse_id").declare(channel=broker.channel)
    # When the worker, now ordered by the flow, starts
    code, output = eda.run("worker", "tracker", EDA_APP=APP, timeout=60)
    # Then it exits 2 with one line naming the exchange and what to do
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert code == 2, output
    assert len(errors) == 1, output
    assert errors[0].startswith("error: worker 'tracker' was ordered by a key before: its exchange "
                                f"'{namespace}.tracker.partitions' still sends events to its partitions"), output
    assert "delete it" in errors[0] and "Traceback" not in output
