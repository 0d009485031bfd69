"""`eda status`: queue depths and consumers over AMQP, and an exit code for monitoring checks."""

import json
import subprocess

import pytest

from tests.support import eda_command, wait_until

pytestmark = pytest.mark.integration


def status(env, *args) -> subprocess.CompletedProcess:
    """Run `eda status`, keeping stdout (the table or JSON) apart from stderr (why it is unhealthy)."""
    return subprocess.run(eda_command() + ["status", *args], env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def table(stdout: str) -> dict:
    """{queue: (kind, messages, consumers)} from the printed table."""
    rows = [line.split() for line in stdout.split("\n\n")[0].splitlines()[1:]]  # the state line follows
    return {queue: (kind, messages, consumers, *active) for _, queue, kind, messages, consumers, *active in rows}


def test_running_workers_with_empty_dlqs_are_healthy(eda, env, namespace):
    # Given every reference worker consuming (ledger and the order saga, ordered, through their partitions)
    eda.worker("payment", "inventory", "shipping", "ledger", "order-saga")
    # When the status of all workers is asked
    result = status(env)
    # Then it is 0, with each worker's queue, retry queues (EDA_RETRY_DELAYS=200ms,400ms) and DLQ
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    rows = table(result.stdout)
    for worker in ("payment", "inventory", "shipping"):
        assert rows[f"{namespace}.{worker}"] == ("work", "0", "1", "-")
        assert rows[f"{namespace}.{worker}.dlq"] == ("dlq", "0", "0", "-")
        assert rows[f"{namespace}.{worker}.retry.200ms"] == ("retry", "0", "0", "-")
        assert rows[f"{namespace}.{worker}.retry.400ms"] == ("retry", "0", "0", "-")
    # and the ledger's eight partitions, each with its active consumer
    for index in range(8):
        assert rows[f"{namespace}.ledger.p{index}"] == ("partition", "0", "1", "yes")
    assert rows[f"{namespace}.ledger.dlq"] == ("dlq", "0", "0", "-")


def test_an_ordered_worker_without_instances_has_partitions_without_an_active_consumer(eda, env, namespace):
    # Given the ledger's partitions declared but no ledger running
    code, output = eda.run("topology", "declare", EDA_PARTITIONS=3)
    assert code == 0, output
    # When its status is asked
    result = status({**env, "EDA_PARTITIONS": "3"}, "ledger")
    # Then it exits 1, each of its three partitions without an active consumer
    assert result.returncode == 1
    assert result.stderr == "unhealthy: " + "; ".join(f"{namespace}.ledger.p{i} has no active consumer"
                                                      for i in range(3)) + "\n"
    rows = table(result.stdout)
    assert [q for q in rows if ".p" in q] == [f"{namespace}.ledger.p{i}" for i in range(3)]
    assert rows[f"{namespace}.ledger.p0"] == ("partition", "0", "0", "no")


def test_a_worker_queue_without_consumer_is_unhealthy(eda, env, namespace):
    # Given the queues declared but no worker running
    code, output = eda.run("topology", "declare")
    assert code == 0, output
    # When its status is asked
    result = status(env, "payment")
    # Then it exits 1 and says why in one line
    assert result.returncode == 1
    assert result.stderr == f"unhealthy: {namespace}.payment has no consumer\n"
    assert table(result.stdout)[f"{namespace}.payment"] == ("work", "0", "0")


def test_queues_never_declared_show_as_missing(env, namespace):
    result = status(env, "shipping")
    assert result.returncode == 1
    assert table(result.stdout)[f"{namespace}.shipping.dlq"] == ("dlq", "missing", "-")
    assert result.stderr == f"unhealthy: {namespace}.shipping is not declared\n"


def test_a_dead_lettered_event_makes_status_unhealthy_and_json_holds_the_counts(eda, env, broker, namespace):
    # Given a payment worker that dead-lettered a poison order
    eda.worker("payment")
    broker.publish("order.placed", {"specversion": "1.0", "id": "poison-1", "source": "test", "type": "order.placed",
                                    "data": {"orderId": "o-poison"}})
    wait_until(lambda: broker.depth(f"{namespace}.payment.dlq") == 1, message="the poison order in the DLQ")
    # When the status is asked as JSON
    result = status(env, "payment", "--json")
    # Then it exits 1, names the DLQ, and the JSON holds the counts
    assert result.returncode == 1
    assert result.stderr == f"unhealthy: {namespace}.payment.dlq holds 1 dead event\n"
    doc = json.loads(result.stdout)
    assert doc["healthy"] is False and doc["problems"] == [f"{namespace}.payment.dlq holds 1 dead event"]
    queues = {q["queue"]: q for q in doc["queues"]}
    assert queues[f"{namespace}.payment.dlq"] == {"worker": "payment", "queue": f"{namespace}.payment.dlq",
                                                  "kind": "dlq", "exists": True, "messages": 1, "consumers": 0,
                                                  "active": None}
    assert queues[f"{namespace}.payment"]["consumers"] == 1


def test_an_unknown_worker_is_a_one_line_error(env):
    result = status(env, "billing")
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown worker 'billing'; known workers: ")
