"""A three-node RabbitMQ cluster (deploy/cluster/cluster.sh) with quorum queues loses a node while orders
flow through payment, inventory and shipping: every order is shipped, none charged twice, none lost.

The cluster runs on this machine beside the test broker, with its own node names, ports and folders,
and is stopped and removed after the module whatever happens. It needs RabbitMQ's own scripts (the
rabbitmq-server package): outside CI the tests skip without them; under CI=true they fail instead.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import kombu
import pytest

from eda import Producer, Settings
from eda_shop.producers.orders import place_order
from tests.conftest import Eda
from tests.support import Spy, environment, in_ci, port_open, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "cluster" / "cluster.sh"
NODES = 3
RATE = 100  # orders per second
RECONNECT_WINDOW = 60


class Cluster:
    """The cluster script's nodes: their URLs, and rabbitmqctl against one of them."""

    def __init__(self, directory: Path, base_port: int):
        self.env = environment(EDA_CLUSTER_DIR=directory, EDA_CLUSTER_PORT=base_port,
                               EDA_CLUSTER_NAME=f"eda-test-{uuid.uuid4().hex[:6]}")
        self.ports = [base_port + n for n in range(NODES)]
        self.name = self.env["EDA_CLUSTER_NAME"]

    def script(self, *args, timeout=300) -> str:
        done = subprocess.run([str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, (f"cluster.sh {' '.join(args)} exited {done.returncode}:\n"
                                      f"{done.stdout}{done.stderr}")
        return done.stdout

    def node(self, n: int) -> str:
        return f"{self.name}-{n}@localhost"

    def url(self, n: int) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.ports[n - 1]}//"

    def failover_url(self, *order: int) -> str:
        return ";".join(self.url(n) for n in order)

    def ctl(self, n: int, *args) -> str:
        return self.script("ctl", str(n), *args, timeout=180)

    def stop_app(self, n: int) -> None:
        self.ctl(n, "stop_app")

    def start_app(self, n: int) -> None:
        self.ctl(n, "start_app")
        self.ctl(n, "await_startup")

    def queues(self, n: int, namespace: str) -> dict:
        """Queue name -> (its type, the node leading it), as node ``n`` sees it."""
        rows = json.loads(self.ctl(n, "list_queues", "name", "type", "leader", "--formatter", "json", "--quiet")
                          or "[]")
        return {row["name"]: (row["type"], row.get("leader")) for row in rows
                if row["name"].startswith(namespace + ".")}

    def leaders(self, n: int, namespace: str) -> dict:
        """Queue name -> the node leading it, as node ``n`` sees it."""
        return {name: leader for name, (_, leader) in self.queues(n, namespace).items()}


def free_base_port() -> int:
    for base in range(5781, 6400, 10):
        if not any(port_open("127.0.0.1", p) for p in (*range(base, base + NODES),
                                                       *range(base + 20000, base + 20000 + NODES))):
            return base
    raise AssertionError("no free range of ports for the cluster")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Three clustered nodes, stopped and their folders removed afterwards whatever the tests did."""
    if not (shutil.which("rabbitmq-server") or Path("/usr/lib/rabbitmq").exists()):
        message = "the cluster tests need RabbitMQ installed here (rabbitmq-server)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    cluster = Cluster(tmp_path_factory.mktemp("cluster") / "nodes", free_base_port())
    try:
        cluster.script("start", timeout=600)
        yield cluster
    finally:
        cluster.script("stop", timeout=300)
        assert not Path(cluster.env["EDA_CLUSTER_DIR"]).exists()


class Orders:
    """Places orders at RATE per second through eda's Producer on a failover list, until stopped."""

    def __init__(self, url: str, namespace: str):
        self.settings = Settings(broker_url=url, namespace=namespace, reconnect_window=RECONNECT_WINDOW)
        self.placed: list[str] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Orders":
        self._thread.start()
        return self

    def _run(self):
        try:
            with Producer(self.settings, source="test/orders") as producer:
                due = time.monotonic()
                while not self._stop.is_set():
                    order_id = f"ord-{uuid.uuid4().hex[:12]}"
                    place_order(producer, "user-1", [("SKU-C", 1, Decimal("10.00"))], order_id=order_id)
                    self.placed.append(order_id)
                    due += 1 / RATE
                    time.sleep(max(0.0, due - time.monotonic()))
        except BaseException as exc:  # reported by stop(): the test fails with it
            self.errors.append(exc)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(timeout=RECONNECT_WINDOW + 60)
        assert not self._thread.is_alive(), "the order producer is stuck"
        assert not self.errors, f"placing orders failed: {self.errors[0]!r}"
        return self.placed


class Shipped:
    """The order ids of the order.shipped events a spy saw, each message parsed once."""

    def __init__(self, spy: Spy):
        self.spy, self.parsed, self.ids = spy, 0, set()

    def order_ids(self) -> set:
        self.spy._poll()
        for message in self.spy.seen[self.parsed:]:
            self.ids.add(json.loads(message.body)["data"]["orderId"])
        self.parsed = len(self.spy.seen)
        return self.ids


def consuming(r):
    return r.get("message") == "consuming"


@pytest.mark.parametrize("stopped", ["leader", "workers' node"])
def test_the_cluster_loses_a_node_under_flowing_orders_and_nothing_else(cluster, gateway, tmp_path, stopped):
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    # Given quorum queues declared through node 1, which so leads every one of them
    eda = Eda(environment(EDA_BROKER_URL=cluster.failover_url(1), EDA_NAMESPACE=namespace, EDA_QUEUE_TYPE="quorum",
                          EDA_STATE_DIR=tmp_path / "state", EDA_LOG_FORMAT="json", EDA_RETRY_DELAYS="200ms,400ms",
                          EDA_SHUTDOWN_TIMEOUT=10, PYTHONUNBUFFERED=1))
    try:
        code, output = eda.run("topology", "declare", timeout=180)
        assert code == 0, output
        work_queues = [f"{namespace}.{w}" for w in ("payment", "inventory", "shipping")]
        queues = cluster.queues(3, namespace)
        assert {queues[q][1] for q in work_queues} == {cluster.node(1)}, queues
        # and every queue eda declared is quorum: work, DLQ and two retry queues per worker, and partitions
        assert {q: t for q, (t, _) in queues.items() if t != "quorum"} == {}
        assert len(queues) >= 3 * 4
        # and payment, inventory and shipping on node 2 (then 3, then 1), with stock for every order
        workers_url = cluster.failover_url(2, 3, 1)
        eda.env["EDA_BROKER_URL"] = workers_url
        eda.publish("stock-replenished", {"sku": "SKU-C", "quantity": 1_000_000})
        workers = [eda.start("worker", name, EDA_PAYMENT_GATEWAY_URL=gateway.url,
                             EDA_RECONNECT_WINDOW=RECONNECT_WINDOW).wait_ready(timeout=90)
                   for name in ("payment", "inventory", "shipping")]
        for worker in workers:
            assert worker.wait_for_log(consuming)["broker"] == f"127.0.0.1:{cluster.ports[1]}"
        with kombu.Connection(cluster.url(3)) as watch:  # node 3 is never stopped
            shipped = Shipped(Spy(watch, namespace, "order.shipped"))
            # When orders flow at 100/s and the node is stopped mid-way, then started again
            orders = Orders(workers_url, namespace).start()
            wait_until(lambda: len(orders.placed) >= 3 * RATE or orders.errors, timeout=60, message="orders flowing")
            node = 1 if stopped == "leader" else 2
            cluster.stop_app(node)
            if stopped == "leader":  # the queues elect leaders among the nodes left
                wait_until(lambda: cluster.node(1) not in {cluster.leaders(3, namespace).get(q) for q in work_queues},
                           timeout=120, interval=2, message="new leaders of the work queues")
            else:  # the workers go on with node 3, within their reconnect window
                for worker in workers:
                    wait_until(lambda w=worker: [r["broker"] for r in w.records if consuming(r)][-1]
                               == f"127.0.0.1:{cluster.ports[2]}", timeout=RECONNECT_WINDOW,
                               message=f"{worker.args[1]} consuming from node 3")
            placed_while_down = len(orders.placed)
            wait_until(lambda: len(orders.placed) >= placed_while_down + 3 * RATE or orders.errors, timeout=120,
                       message="orders flowing while the node is down")
            cluster.start_app(node)
            placed = len(orders.placed)
            wait_until(lambda: len(orders.placed) >= placed + 2 * RATE or orders.errors, timeout=60,
                       message="orders flowing after the node is back")
            order_ids = orders.stop()
            # Then every order is shipped, none charged twice, none lost
            try:
                wait_until(lambda: set(order_ids) <= shipped.order_ids(), timeout=600,
                           interval=1, message=f"all {len(order_ids)} orders shipped")
            except AssertionError:
                missing = set(order_ids) - shipped.order_ids()
                raise AssertionError(f"{len(missing)} of {len(order_ids)} orders not shipped (e.g. "
                                     f"{sorted(missing)[:3]}; {len(gateway.simulation.calls)} charged); the "
                                     f"namespace's queues (messages, unacked, consumers): "
                                     f"{queue_depths(cluster, namespace)}") from None
            assert gateway.simulation.charges == len(order_ids)  # the gateway replays a repeated charge
        # and no worker gave up: each rode out the lost node within its reconnect window
        for worker in workers:
            assert worker.proc.poll() is None, worker.output[-3000:]
            assert "Traceback" not in worker.output and "guest:guest" not in worker.output
        dlq_depths = {q: n for q, n in dead_letter_depths(cluster, namespace).items() if n}
        assert not dlq_depths, dlq_depths
    finally:
        eda.report()
        eda.stop_all()


def queue_depths(cluster: Cluster, namespace: str) -> dict:
    """Messages and consumers of each queue of the namespace, as node 3 sees them."""
    rows = json.loads(cluster.ctl(3, "list_queues", "name", "messages", "messages_unacknowledged", "consumers",
                                  "--formatter", "json", "--quiet") or "[]")
    return {row["name"]: (row["messages"], row["messages_unacknowledged"], row["consumers"]) for row in rows
            if row["name"].startswith(namespace + ".")}


def dead_letter_depths(cluster: Cluster, namespace: str) -> dict:
    with kombu.Connection(cluster.url(3)) as conn:
        channel = conn.channel()
        return {f"{namespace}.{w}.dlq": channel.queue_declare(f"{namespace}.{w}.dlq", passive=True).message_count
                for w in ("payment", "inventory", "shipping")}


def test_the_replication_benchmark_runs_on_the_cluster(cluster, broker_url, tmp_path):
    # Given the running cluster, when the benchmark's cluster measure runs on a small N
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--n", "200", "--only", "cluster", "--out", str(tmp_path)],
        cwd=ROOT, env={**os.environ, "EDA_BROKER_URL": broker_url,
                       "EDA_BENCH_CLUSTER_URL": cluster.failover_url(1, 2, 3)},
        capture_output=True, text=True, timeout=600)
    # Then it reports both rates and their ratio, the price of replication
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((tmp_path / "latest.json").read_text())
    assert data["failed"] == {}
    assert data["results"]["cluster"]["single_classic"] > 0 and data["results"]["cluster"]["cluster_quorum"] > 0
    [row] = [r for r in data["rows"] if r["item"].startswith("cluster:")]
    assert row["ratio"] == pytest.approx(data["results"]["cluster"]["cluster_quorum"]
                                         / data["results"]["cluster"]["single_classic"])
