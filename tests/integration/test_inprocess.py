"""Workers in a program of one's own on the real broker: ``eda.running`` declares and consumes as ``eda
worker`` does, ``eda.delete_topology`` removes what a namespace made for a while holds, and ``eda demo``
(built on them) leaves nothing behind."""

import re

import kombu
import pytest

from eda import Settings, delete_topology, running
from eda_shop.workers.shipping import Shipping

pytestmark = pytest.mark.integration


def exchange_exists(conn: kombu.Connection, name: str) -> bool:
    try:
        with conn.channel() as channel:
            channel.exchange_declare(name, "topic", passive=True)
        return True
    except conn.channel_errors:
        return False


def test_running_declares_the_workers_queues_and_delete_topology_removes_them(broker, broker_url, namespace,
                                                                              tmp_path):
    settings = Settings(broker_url=broker_url, namespace=namespace, state_dir=tmp_path, retry_delays="200ms,400ms")
    queues = [f"{namespace}.shipping{suffix}" for suffix in ("", ".dlq", ".retry.200ms", ".retry.400ms")]
    # Given shipping run in this process
    with running(Shipping, settings=settings) as workers:
        assert workers.worker("shipping").name == "shipping"
        assert all(broker.exists(q) for q in queues)
    # When its namespace is deleted
    delete_topology(settings, Shipping, "never-ran")  # a worker that declared nothing is no error
    # Then neither its queues nor the namespace's exchanges are left
    assert [q for q in queues if broker.exists(q)] == []
    with kombu.Connection(broker_url) as conn:
        assert not exchange_exists(conn, f"{namespace}.events") and not exchange_exists(conn, f"{namespace}.dlx")


def test_the_demo_leaves_nothing_of_its_namespace_on_the_broker(eda, broker, broker_url, namespace):
    code, output = eda.run("demo", timeout=90)
    assert code == 0, output
    demo = re.search(r"in namespace (\S+) \(", output).group(1)
    assert demo.startswith(f"{namespace}-demo-")
    for worker in ("payment", "inventory", "shipping"):
        assert not broker.exists(f"{demo}.{worker}") and not broker.exists(f"{demo}.{worker}.dlq")
    with kombu.Connection(broker_url) as conn:
        assert not exchange_exists(conn, f"{demo}.events")
