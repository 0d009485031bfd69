"""Shared fixtures: a real RabbitMQ, a namespace of its own per test, `eda` processes, a test gateway.

The broker is EDA_TEST_BROKER_URL where set, else one answering on localhost:5672, else a
testcontainers RabbitMQ where Docker works. Under CI=true a missing broker fails the run.
"""

import json
import os
import tempfile
import threading
import uuid
from urllib.parse import urlsplit

import kombu
import pytest

from eda_shop.workers.gateway import Simulation, serve
from eda.topology import Topology
from tests.monitoring import NotifySocket
from tests.support import in_ci, Broker, EdaProcess, environment, port_open
from eda import discovery

LOCAL_BROKER = "amqp://guest:guest@localhost:5672//"
TEST_RETRY_DELAYS = "200ms,400ms"


def _testcontainers_broker():
    try:
        from testcontainers.rabbitmq import RabbitMqContainer
    except ImportError:
        from testcontainers.community.rabbitmq import RabbitMqContainer
    container = RabbitMqContainer("rabbitmq:3.13-alpine")
    container.start()
    container.exec(["rabbitmq-plugins", "enable", "rabbitmq_consistent_hash_exchange"])  # ordered workers
    host, port = container.get_container_host_ip(), container.get_exposed_port(container.port)
    return container, f"amqp://{container.username}:{container.password}@{host}:{port}//"


@pytest.fixture(scope="session")
def broker_url():
    url = os.environ.get("EDA_TEST_BROKER_URL")
    if url:
        yield url
        return
    if port_open("localhost", 5672):
        yield LOCAL_BROKER
        return
    try:
        container, url = _testcontainers_broker()
    except Exception as exc:  # no Docker here either
        message = f"no RabbitMQ: set EDA_TEST_BROKER_URL, run one on localhost:5672, or run Docker ({exc})"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    yield url
    container.stop()


@pytest.fixture
def namespace(broker_url):
    """A namespace of the test's own; everything the workers declare in it is deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    conn = kombu.Connection(broker_url)
    try:
        channel = conn.channel()
        for delays in ((), (200, 400), (1000, 5000, 30000, 120000, 600000)):
            topology = Topology(name, delays)
            for worker in discovery.discover():
                topology.delete_worker(channel, worker)
        for worker in discovery.discover():  # an ordered worker's partitions (up to 16) and hash exchange
            Topology(name).delete_ordered(channel, worker, partitions=16)
        Topology(name).delete_exchanges(channel)
    finally:
        conn.release()


@pytest.fixture
def database():
    """A fresh PostgreSQL database of the test's own (its URL), dropped afterwards (tests/pg.py)."""
    from tests import pg

    try:
        name, url = pg.create_database()
    except Exception as exc:  # noqa: BLE001 - no PostgreSQL here
        if in_ci():
            pytest.fail(f"no PostgreSQL at {pg.ADMIN_URL}: {exc}")
        pytest.skip(f"no PostgreSQL at {pg.ADMIN_URL}: {exc}")
    yield url
    pg.drop_database(name)


@pytest.fixture
def env(broker_url, namespace, tmp_path, request):
    """The environment an `eda` process of this test runs with (state in PostgreSQL under
    EDA_TEST_STATE=postgresql, see tests/pg.py)."""
    from tests.pg import state_backend

    state = {"EDA_DATABASE_URL": request.getfixturevalue("database")} if state_backend() == "postgresql" else {}
    return environment(EDA_BROKER_URL=broker_url, EDA_NAMESPACE=namespace, EDA_STATE_DIR=tmp_path / "state",
                       EDA_LOG_FORMAT="json", EDA_LOG_LEVEL="INFO", EDA_RETRY_DELAYS=TEST_RETRY_DELAYS,
                       EDA_SHUTDOWN_TIMEOUT=10, PYTHONUNBUFFERED=1, **state)


class Eda:
    """Runs `eda` commands the way a user does, in the test's environment."""

    def __init__(self, env):
        self.env = env
        self.cwd = None  # the directory commands run in (a project's own folder)
        self.command = None  # the `eda` to run: this interpreter's, unless a test installed one elsewhere
        self.processes: list[EdaProcess] = []

    def start(self, *args, **env) -> EdaProcess:
        proc = EdaProcess(args, {**self.env, **{k: str(v) for k, v in env.items()}}, cwd=self.cwd,
                          command=self.command)
        self.processes.append(proc)
        return proc

    def worker(self, *names, **env) -> EdaProcess:
        """Start `eda worker NAMES...` and wait until each named worker is consuming."""
        return self.start("worker", *names, **env).wait_ready()

    def run(self, *args, timeout=60.0, **env):
        """Run a command to its end; returns (exit code, stdout + stderr lines)."""
        proc = self.start(*args, **env)
        code = proc.wait(timeout)
        return code, proc.output

    def publish(self, event, *data: dict, args=(), **env) -> list[str]:
        """`eda publish EVENT` of each data dict (as a file of JSON lines); the ids the broker confirmed."""
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as lines:
            lines.write("\n".join(json.dumps(d) for d in data))
            lines.flush()
            code, output = self.run("publish", event, "--file", lines.name, *args, **env)
        assert code == 0, output
        ids = [line for line in output.splitlines() if line and not line.startswith(("{", "error"))]
        assert len(ids) == len(data), output
        return ids

    def stop_all(self):
        for proc in self.processes:
            proc.stop()

    def report(self, tail=4000):
        """The end of each process's output, printed: pytest shows it beside a failed test."""
        for proc in self.processes:
            state = "running" if proc.proc.poll() is None else f"exited {proc.proc.returncode}"
            print(f"--- eda {' '.join(proc.args)} ({state}), output (end):\n{proc.output[-tail:]}")


@pytest.fixture
def eda(env):
    runner = Eda(env)
    yield runner
    runner.report()
    runner.stop_all()


@pytest.fixture
def broker(broker_url, namespace):
    b = Broker(broker_url, namespace)
    yield b
    b.close()


@pytest.fixture
def gateway():
    """A payment gateway simulation on HTTP that the test controls (``gateway.simulation.down = True``)."""
    simulation = Simulation()
    server = serve(simulation, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.simulation = simulation
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def order(order_id=None, amount="100.00", items=(("SKU-1", 1),), **extra) -> dict:
    """The data of an order.placed event, as a user would write it."""
    return {"orderId": order_id or f"ord-{uuid.uuid4().hex[:8]}", "userId": "user-1", "totalAmount": amount,
            "items": [{"sku": sku, "quantity": qty, "unitPrice": "10.00"} for sku, qty in items], **extra}


@pytest.fixture
def make_order():
    return order


def broker_host(url: str) -> str:
    return urlsplit(url).hostname or "localhost"


@pytest.fixture
def app_queues(broker_url, namespace, eda):
    """``app_queues("reports", ...)``: the queues of a test app's workers (``EDA_APP``), which the
    namespace fixture does not know, are deleted after the test, once its eda processes stopped."""
    workers = []
    yield lambda *names: workers.extend(names)
    eda.stop_all()
    conn = kombu.Connection(broker_url)
    try:
        channel = conn.channel()
        for delays in ((), (200, 400), (1000, 5000, 30000, 120000, 600000)):
            for worker in workers:
                Topology(namespace, delays).delete_worker(channel, worker)
    finally:
        conn.release()


@pytest.fixture
def notify_socket():
    """systemd's notify socket, for a worker started with NOTIFY_SOCKET=notify_socket.name."""
    sock = NotifySocket()
    yield sock
    sock.close()
