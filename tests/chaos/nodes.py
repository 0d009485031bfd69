"""The chaos run's RabbitMQ cluster: three nodes, each in its host's namespace, clustered with long names.

Each node is ``rabbit@<its address>`` (``RABBITMQ_USE_LONGNAME``: Erlang needs no name resolution, and
each namespace runs its own epmd on the usual port), with its own data, log and config folders under
the run's folder and an Erlang cookie of the run's own (``HOME``). RabbitMQ's own scripts run as root
(the package's, not Debian's wrappers, which switch to the rabbitmq user). The config is what the README
recommends for a cluster: ``cluster_partition_handling = pause_minority``; ``net_ticktime`` is lowered
to TICKTIME so that a partition is noticed within seconds of a short run (60 s by default).
"""

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.chaos.network import Host

TICKTIME = 10
PORT = 5672


def sbin() -> Path:
    """The folder of RabbitMQ's own scripts (the rabbitmq-server package's)."""
    if os.environ.get("RABBITMQ_SBIN"):
        return Path(os.environ["RABBITMQ_SBIN"])
    listed = subprocess.run(["dpkg", "-L", "rabbitmq-server"], capture_output=True, text=True).stdout.split()
    found = [p for p in listed if p.endswith("/sbin/rabbitmq-server") and "/lib/rabbitmq_server-" in p]
    if not found:
        raise RuntimeError("RabbitMQ's own scripts not found (install rabbitmq-server or set RABBITMQ_SBIN)")
    return Path(found[0]).parent


class NodeError(Exception):
    """A RabbitMQ command failed, or a node did not come up in time."""


class Node:
    """One RabbitMQ node in ``host``'s namespace, its files under ``folder``."""

    def __init__(self, host: Host, folder: Path, home: Path):
        self.host = host
        self.folder = folder
        self.home = home
        self.name = f"rabbit@{host.address}"
        self.url = f"amqp://guest:guest@{host.address}:{PORT}//"
        self._server = None

    def env(self) -> dict:
        d = self.folder
        return {**os.environ, "HOME": str(self.home), "RABBITMQ_NODENAME": self.name, "RABBITMQ_USE_LONGNAME": "true",
                "RABBITMQ_NODE_PORT": str(PORT), "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
                "RABBITMQ_LOG_BASE": str(d / "log"), "RABBITMQ_PID_FILE": str(d / "pid"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
                "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
                "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf")}

    def configure(self) -> None:
        d = self.folder
        (d / "mnesia").mkdir(parents=True, exist_ok=True)
        (d / "log").mkdir(exist_ok=True)
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = {self.host.address}:{PORT}\n"
            "loopback_users = none\n"
            "cluster_partition_handling = pause_minority\n")
        (d / "advanced.config").write_text(f"[{{kernel, [{{net_ticktime, {TICKTIME}}}]}}].\n")
        (d / "enabled_plugins").write_text("[rabbitmq_consistent_hash_exchange].\n")
        (d / "rabbitmq-env.conf").write_text("")

    def start(self) -> None:
        out = open(self.folder / "server.out", "ab")
        self._server = subprocess.Popen([*self.host.exec_prefix(), str(sbin() / "rabbitmq-server")], env=self.env(),
                                        cwd=self.folder, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()

    def ctl(self, *args: str, timeout: float = 120, check: bool = True, tool: str = "rabbitmqctl") -> str:
        argv = [*self.host.exec_prefix(), str(sbin() / tool), "-n", self.name, "--longnames", *args]
        try:
            done = subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise NodeError(f"{tool} {' '.join(args)} on {self.name}: no answer within {timeout:g}s") from None
        if check and done.returncode != 0:
            raise NodeError(f"{tool} {' '.join(args)} on {self.name} exited {done.returncode}: "
                            f"{(done.stdout + done.stderr).strip()[-1500:]}")
        return done.stdout

    def wait_up(self, timeout: float = 180) -> None:
        """Wait until the node answers and its broker has booted (await_startup fails at once before ping)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ctl("ping", timeout=30)
                self.ctl("await_startup", "--timeout", "60", timeout=90)
                return
            except NodeError as exc:
                if time.monotonic() > deadline:
                    raise NodeError(f"{self.name} did not start within {timeout:g}s ({exc}); "
                                    f"logs in {self.folder / 'log'}") from None
                time.sleep(1)

    def beam_pid(self) -> int | None:
        try:
            return int((self.folder / "pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """The node's crash: SIGKILL of its Erlang VM (no clean shutdown, no change of clock)."""
        pid = self.beam_pid()
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._server is not None:
            try:
                self._server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait(timeout=10)
        (self.folder / "pid").unlink(missing_ok=True)

    def stop(self) -> None:
        """A clean stop when it answers, else a kill."""
        if self._server is not None and self._server.poll() is None:
            try:
                self.ctl("stop", timeout=60)
            except NodeError:
                pass
        self.kill()


class Cluster:
    """Three nodes clustered through the first: started together, joined, then open to clients."""

    def __init__(self, hosts: list[Host], folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        cookie = folder / ".erlang.cookie"
        cookie.write_text(os.urandom(20).hex().upper())
        cookie.chmod(0o400)
        self.nodes = [Node(host, folder / host.name, folder) for host in hosts]

    def start(self) -> None:
        for node in self.nodes:
            node.configure()
            node.start()
        for node in self.nodes:
            node.wait_up()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")
            node.wait_up()

    def running_nodes(self, via: Node) -> list[str]:
        import json

        status = json.loads(via.ctl("cluster_status", "--formatter", "json", timeout=30) or "{}")
        return sorted(status.get("running_nodes", []))

    def wait_healthy(self, timeout: float = 180) -> None:
        """Wait until every node runs its broker and sees all three running (after heals and restarts)."""
        deadline = time.monotonic() + timeout
        names = sorted(n.name for n in self.nodes)
        problem = ""
        while time.monotonic() < deadline:
            try:
                if all(self.running_nodes(node) == names for node in self.nodes):
                    return
                problem = "not every node sees the other two running"
            except NodeError as exc:
                problem = str(exc)
            time.sleep(2)
        raise NodeError(f"the cluster did not heal within {timeout:g}s: {problem}")

    def queues(self) -> list[dict]:
        """Every queue with its type, leader, messages (ready + unacked) and consumers, as a running node sees it."""
        import json

        for node in self.nodes:
            try:
                out = node.ctl("list_queues", "name", "type", "leader", "messages", "messages_unacknowledged",
                               "consumers", "--formatter", "json", "--quiet", timeout=60)
                return json.loads(out or "[]")
            except (NodeError, ValueError):
                continue
        raise NodeError("no node answered list_queues")

    def stop(self) -> None:
        """Kill every node: the run's data is thrown away, so there is nothing to stop cleanly for."""
        for node in self.nodes:
            node.kill()
