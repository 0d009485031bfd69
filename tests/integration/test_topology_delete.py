"""`eda topology delete`: a namespace's queues and exchanges removed from the shell, saying what went and
how many events with it, refused without --yes."""

import pytest

pytestmark = pytest.mark.integration

ORDER = ('{"orderId": "o-1", "userId": "u-1", "totalAmount": "10.00", '
         '"items": [{"sku": "SKU-1", "quantity": 1}]}')


def exchange_exists(broker, name: str) -> bool:
    try:
        with broker.conn.channel() as channel:
            channel.exchange_declare(name, "topic", passive=True)
        return True
    except broker.conn.channel_errors:
        return False


@pytest.fixture
def declared(eda, broker, namespace):
    """Every shop worker's queues declared (`eda topology declare`), and one order waiting in them."""
    code, output = eda.run("topology", "declare")
    assert code == 0, output
    code, output = eda.run("publish", "order-placed", "--data", ORDER)
    assert code == 0, output
    return namespace


def test_without_yes_it_deletes_nothing_and_says_what_it_would(eda, broker, declared):
    # When the namespace's topology is deleted without --yes
    code, output = eda.run("topology", "delete")
    # Then it is refused in one line, exit 2, naming what would go; everything is still there
    assert code == 2 and len(output.splitlines()) == 1, output
    assert output.startswith("error: topology delete deletes the queues of every worker (inventory, ledger, "
                             f"order-saga, payment, shipping) and the exchanges of namespace {declared}, and the "
                             "events in them, for good; add --yes to confirm"), output
    assert broker.depth(f"{declared}.payment") == 1 and exchange_exists(broker, f"{declared}.events")


def test_a_named_worker_s_queues_go_with_their_events_and_the_rest_stays(eda, broker, declared):
    # When payment's queues are deleted, one order waiting in its work queue
    code, output = eda.run("topology", "delete", "payment", "--yes")
    # Then each queue is named as it goes, the order that went with the work queue counted
    assert code == 0, output
    assert output.splitlines() == [
        f"deleted queue {declared}.payment, and the 1 message it held",
        f"deleted queue {declared}.payment.dlq",
        f"deleted queue {declared}.payment.retry.200ms",
        f"deleted queue {declared}.payment.retry.400ms",
        f"deleted 4 queues (1 message in them) of namespace {declared}",
    ]
    assert not any(broker.exists(f"{declared}.payment{q}") for q in ("", ".dlq", ".retry.200ms", ".retry.400ms"))
    # And the other workers' queues and the namespace's exchanges stay
    assert broker.exists(f"{declared}.shipping") and broker.exists(f"{declared}.ledger.p0")
    assert exchange_exists(broker, f"{declared}.events")


def test_with_no_worker_named_every_worker_s_queues_and_the_exchanges_go(eda, broker, declared):
    # When the whole namespace is deleted
    code, output = eda.run("topology", "delete", "--yes")
    # Then the queues of every worker go, an ordered worker's partitions and hash exchange too, then the exchanges
    assert code == 0, output
    lines = output.splitlines()
    assert f"deleted queue {declared}.payment, and the 1 message it held" in lines
    assert {f"deleted queue {declared}.ledger.p0", f"deleted queue {declared}.ledger.p7",
            f"deleted exchange {declared}.ledger.partitions", f"deleted queue {declared}.shipping.retry.400ms",
            f"deleted exchange {declared}.order-saga.flow-partitions"} <= set(lines)
    assert lines[-3:-1] == [f"deleted exchange {declared}.events", f"deleted exchange {declared}.dlx"]
    assert lines[-1].startswith("deleted ") and lines[-1].endswith(f"and 4 exchanges of namespace {declared}")
    assert not broker.exists(f"{declared}.payment") and not broker.exists(f"{declared}.ledger.p7")
    assert not exchange_exists(broker, f"{declared}.events") and not exchange_exists(broker, f"{declared}.ledger.partitions")
    # And once more, there is nothing left to delete
    code, output = eda.run("topology", "delete", "--yes")
    assert code == 0 and output.startswith("nothing to delete: "), output


def test_queues_a_running_worker_consumes_from_are_not_deleted_without_force(eda, broker, declared):
    # Given a running shipping worker
    worker = eda.worker("shipping")
    # When the namespace is deleted
    code, output = eda.run("topology", "delete", "--yes")
    # Then nothing is deleted, and the one-line error names the queue in use and what to do
    assert code == 2 and len(output.splitlines()) == 1, output
    assert output.startswith(f"error: workers are consuming from {declared}.shipping (1): ") and "--force" in output
    assert broker.depth(f"{declared}.payment") == 1 and exchange_exists(broker, f"{declared}.events")
    # And once the worker has stopped, it goes
    worker.send()
    assert worker.wait(30) == 0
    code, output = eda.run("topology", "delete", "shipping", "--yes")
    assert code == 0 and not broker.exists(f"{declared}.shipping"), output


def test_force_deletes_queues_a_worker_consumes_from(eda, broker, declared):
    eda.worker("shipping")
    code, output = eda.run("topology", "delete", "shipping", "--yes", "--force")
    assert code == 0 and f"deleted queue {declared}.shipping" in output.splitlines(), output


def test_an_unknown_worker_is_one_line_and_nothing_is_deleted(eda, broker, declared):
    code, output = eda.run("topology", "delete", "paymnt", "--yes")
    assert code == 2 and output.startswith("error: unknown worker 'paymnt'") and len(output.splitlines()) == 1, output
    assert broker.depth(f"{declared}.payment") == 1


def test_delete_topology_from_python_finds_partitions_past_the_default_and_says_what_went(eda, broker, broker_url,
                                                                                          namespace):
    # Given the ordered ledger declared with 12 partitions, more than the default 8
    code, output = eda.run("topology", "declare", EDA_PARTITIONS="12")
    assert code == 0, output
    assert broker.exists(f"{namespace}.ledger.p11")
    # When a program deletes the ledger's topology with default settings
    from eda import Settings, delete_topology

    deleted = delete_topology(Settings(broker_url=broker_url, namespace=namespace, retry_delays="200ms,400ms"), "ledger")
    # Then every partition goes, the ones past the default too, and what went is returned
    assert not any(broker.exists(f"{namespace}.ledger.p{i}") for i in range(12))
    assert {f"{namespace}.ledger.p11", f"{namespace}.ledger.partitions", f"{namespace}.events"} <= {d.name for d in deleted}
    assert not exchange_exists(broker, f"{namespace}.events")
