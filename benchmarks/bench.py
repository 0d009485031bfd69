"""What every benchmark shares: the broker, a namespace of the run's own, sample events, pre-loading.

Everything is declared under ``bench-<random>`` and deleted by ``Bench.cleanup``, so a run leaves
the broker as it found it.
"""

import os
import platform
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import kombu
from kombu import Exchange, Queue

from eda.contracts.envelope import Event, encode
from eda.settings import DEFAULT_BROKER_URL, Settings
from eda.topology import Topology
from eda.publishing.publisher import Publisher
from eda.contracts.envelope import event_properties

PREFETCH = Settings().prefetch  # raw kombu consumes with eda's default prefetch: same broker work
ORDER = {"order_id": "ord-1", "user_id": "user-1", "total_amount": Decimal("30.00"), "currency": "USD",
         "items": [{"sku": "SKU-1", "quantity": 3, "unit_price": Decimal("10.00")}]}
RESERVED = {"order_id": "ord-1", "items": ORDER["items"]}


def broker_url() -> str:
    return os.environ.get("EDA_BROKER_URL") or os.environ.get("EDA_TEST_BROKER_URL") or DEFAULT_BROKER_URL


def order_event(i: int = 0, **attrs) -> Event:
    return Event("order.placed", {**ORDER, "order_id": f"ord-{i:08d}"}, "eda/bench", **attrs)


def reserved_event(i: int = 0) -> Event:
    return Event("inventory.reserved", {**RESERVED, "order_id": f"ord-{i:08d}"}, "eda/bench", id=f"res-{i:08d}")


class Bench:
    """One run's broker namespace, and the queues and workers it declared there."""

    WORKERS = ("noop", "shipping", "payment", "inventory")

    def __init__(self, url: str | None = None):
        self.url = url or broker_url()
        self.namespace = f"bench-{uuid.uuid4().hex[:8]}"
        self.settings = Settings(broker_url=self.url, namespace=self.namespace)
        self.topology = Topology(self.namespace, self.settings.retry_delays_ms)
        self.exchange = Exchange(self.topology.events.name, type="topic", durable=True)
        self.conn = kombu.Connection(self.url)
        self.conn.connect()
        self.channel = self.conn.channel()
        self.topology.declare_exchanges(self.channel)
        self._queues = set()

    def reconnect(self) -> None:
        """A fresh connection for the run's own declarations (after the broker dropped the last one)."""
        try:
            self.conn.release()
        except Exception:  # already dead
            pass
        self.conn = kombu.Connection(self.url)
        self.conn.connect()
        self.channel = self.conn.channel()

    def connection(self, **transport_options) -> kombu.Connection:
        conn = kombu.Connection(self.url, transport_options=transport_options)
        conn.connect()
        return conn

    def queue(self, name: str, *routing_keys: str) -> Queue:
        """A plain durable queue of the run, empty, bound to the events exchange by ``routing_keys``."""
        full = f"{self.namespace}.{name}"
        bindings = [kombu.binding(self.exchange, routing_key=k) for k in routing_keys]
        queue = Queue(full, bindings=bindings, durable=True)
        queue(self.channel).declare()
        self.channel.queue_purge(full)
        self._queues.add(full)
        return queue

    def worker_queue(self, worker: str, event_types) -> str:
        """Declare a worker's queues the way its runtime will, and return the work queue's name."""
        queue = self.topology.declare_worker(self.channel, worker, event_types)
        self.channel.queue_purge(queue.name)
        return queue.name

    def depth(self, queue: str) -> int:
        return self.channel.queue_declare(queue, passive=True).message_count

    def consumers(self, queue: str) -> int:
        return self.channel.queue_declare(queue, passive=True).consumer_count

    def preload(self, queue: str, make_event, n: int, *, wait: bool = True) -> None:
        """Put ``n`` distinct events straight into ``queue`` (default exchange), confirmed; with
        ``wait``, return once the queue holds them all (nothing consumes it yet)."""
        conn = self.connection()
        try:
            publisher = Publisher(conn)
            for i in range(n):
                event = make_event(i)
                publisher.send("", queue, encode(event), event_properties(event), label=event.id)
                if publisher.in_flight >= publisher.window:
                    publisher.wait(until=publisher.window // 2)
            publisher.wait()
        finally:
            conn.release()
        if wait:
            wait_for(lambda: self.depth(queue) >= n, 30, f"{n} events in {queue}")

    def cleanup(self) -> None:
        for worker in self.WORKERS:
            self.topology.delete_worker(self.channel, worker)
        for name in self._queues:
            self.channel.queue_delete(name)
        self.topology.delete_exchanges(self.channel)
        self.conn.release()

    def worker_env(self, state_dir) -> dict:
        """The environment of an `eda worker` process of this run (default settings otherwise)."""
        env = dict(os.environ)
        env.update(EDA_BROKER_URL=self.url, EDA_NAMESPACE=self.namespace, EDA_STATE_DIR=str(state_dir))
        return env

    def machine(self) -> dict:
        server = self.conn.connection.server_properties
        version = server.get("version")
        return {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
                "rabbitmq": version.decode() if isinstance(version, bytes) else version,
                "kombu": kombu.__version__, "platform": platform.platform()}


def wait_for(condition, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def broker_pid() -> int | None:
    """The local RabbitMQ node's process (beam.smp), if one runs on this machine."""
    out = subprocess.run(["pgrep", "-o", "-f", "beam.smp.*rabbit"], capture_output=True, text=True)
    return int(out.stdout.split()[0]) if out.returncode == 0 and out.stdout.strip() else None


class CpuWindow:
    """CPU used over a window: by each named process, and the share of the machine's cores busy.
    What limits a rate on a shared machine is measured here, not guessed: a process at 1.0 of a core
    is bound by the GIL; the machine at 1.0 busy has no core left."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids

    def __enter__(self):
        self.started = time.perf_counter()
        self.start_cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.start_ticks = machine_ticks()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.started
        self.cpu = {}
        for name, pid in self.pids.items():
            try:
                self.cpu[name] = cpu_seconds(pid) - self.start_cpu[name]
            except OSError:  # the process ended meanwhile
                self.cpu[name] = float("nan")
        busy, total = machine_ticks()
        self.busy = (busy - self.start_ticks[0]) / max(1, total - self.start_ticks[1])

    def summary(self, units: int) -> dict:
        """Per process: cores used and CPU ms per unit of work; the machine's busy share."""
        return {"machine_busy": round(self.busy, 3),
                "processes": {name: {"cores": round(cpu / self.seconds, 3),
                                     "cpu_ms_per_unit": round(1000 * cpu / max(1, units), 3)}
                              for name, cpu in self.cpu.items()}}


def eda_worker(names, env, preexec_fn=None) -> subprocess.Popen:
    """Start `eda worker NAMES` as a user would; its log lines go nowhere (they are still written).
    ``preexec_fn`` runs in the child before it execs (joining a cgroup: benchmarks.confine)."""
    script = Path(sys.executable).parent / "eda"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "cli"]
    return subprocess.Popen([*command, "worker", *names], env=env, preexec_fn=preexec_fn,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
