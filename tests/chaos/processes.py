"""The chaos run's processes: the shop's workers, the gateway and the order load, each in its host's namespace.

Every process is started through ``ip netns exec`` (which execs the command: the process id is the
program's own, so SIGSTOP reaches it), writes its output to a log file of the run, and is stopped with
SIGTERM, then SIGKILL. Workers get the environment of a cluster deployment (README, "A cluster of
brokers"): the failover list of the three nodes (rotated per instance to spread connections), quorum
queues, state in PostgreSQL, a short heartbeat (HEARTBEAT) so a paused or cut-off worker is noticed
within seconds, and retry delays that outlast the longest cut.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.chaos.network import Host

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "chaos"  # the eda namespace: the cluster is the run's own, so one fixed name is enough
HEARTBEAT = 4  # seconds: a worker silent for two of them is dropped by the broker
RECONNECT_WINDOW = 300  # longer than any fault: a worker never gives up during the run
RETRY_DELAYS = "1s,2s,5s,10s,20s,30s"  # 68 s in all: longer than any cut from PostgreSQL
GATEWAY_PORT = 8080
# Each charge takes this long at the gateway: a pause or a cut then catches charges in flight, whose
# events the broker hands to the other instance while the first still holds them.
GATEWAY_LATENCY = 0.1

# The shop's workers and their instances: name -> the hosts that run one each.
WORKERS = {"payment": ["pay1", "pay2"], "inventory": ["inv1", "inv2"], "shipping": ["ship1", "ship2"],
           "ledger": ["ledger"]}


def eda_bin() -> str:
    """The ``eda`` command of the interpreter running the harness (the project's venv)."""
    return str(Path(sys.executable).with_name("eda"))


class ProcessError(Exception):
    """A process of the run did not come up (its log's tail is in the message)."""


class Process:
    """One program in a host's namespace, its output in ``log``."""

    def __init__(self, name: str, host: Host, argv: list[str], env: dict, log: Path):
        self.name, self.host, self.argv, self.env, self.log = name, host, argv, env, log
        self.proc: subprocess.Popen | None = None
        self.paused = False

    def start(self) -> "Process":
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([*self.host.exec_prefix(), *self.argv], env=self.env, cwd=ROOT,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        if self.paused:
            self.resume()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def records(self) -> list[dict]:
        """The JSON lines of its log (other lines skipped)."""
        out = []
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return out
        for line in text.splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def wait_for_log(self, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.records():
                if predicate(record):
                    return record
            if not self.alive():
                break
            time.sleep(0.5)
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise ProcessError(f"{self.name}: {what} not seen within {timeout:g}s (exit {self.proc.poll()}):\n{tail}")


def base_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDA_")}
    env.update({"EDA_NAMESPACE": NAMESPACE, "EDA_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1",
                "EDA_QUEUE_TYPE": "quorum", "EDA_HEARTBEAT": str(HEARTBEAT),
                "EDA_RECONNECT_WINDOW": str(RECONNECT_WINDOW), "PYTHONPATH": str(ROOT)})
    env.update({k: str(v) for k, v in extra.items()})
    return env


def failover_url(node_urls: list[str], rotation: int) -> str:
    """The nodes' URLs as one failover list, starting at node ``rotation`` (mod their number)."""
    k = rotation % len(node_urls)
    return ";".join(node_urls[k:] + node_urls[:k])


def worker(name: str, host: Host, index: int, node_urls: list[str], database_url: str, gateway_url: str,
           logs: Path) -> Process:
    env = base_env(EDA_BROKER_URL=failover_url(node_urls, index), EDA_DATABASE_URL=database_url,
                   EDA_RETRY_DELAYS=RETRY_DELAYS, EDA_SHUTDOWN_TIMEOUT=10)
    if name == "payment":
        # A gateway of the run's own, shared by both instances (its idempotency keys are the orders' ids),
        # that logs every real charge; breaker settings short so that a cut-off gateway pauses payment briefly.
        env.update(worker_settings("payment", gateway_url=gateway_url, gateway_timeout=5,
                                   breaker_reset_timeout=5))
    return Process(host.name, host, [eda_bin(), "worker", name], env, logs / f"{host.name}.log")


def worker_settings(worker_name: str, **values) -> dict:
    """Environment variables of a worker's own settings, by their names as the worker declares them."""
    from eda import discovery
    from eda.worker_settings import declared

    settings = {s.name: s for s in declared(discovery.get(worker_name))}  # the worker's to name
    return {settings[name].variable(worker_name): str(value) for name, value in values.items()}


def wait_consuming(process: Process, worker_name: str, timeout: float = 120) -> dict:
    return process.wait_for_log(lambda r: r.get("message") == "consuming" and r.get("worker") == worker_name,
                                timeout, f"worker {worker_name} consuming")


def python_module(name: str, host: Host, module: str, args: list[str], logs: Path, **env) -> Process:
    return Process(name, host, [sys.executable, "-m", module, *args], base_env(**env), logs / f"{name}.log")
