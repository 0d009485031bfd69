"""The chaos run's network: one network namespace per host, joined by a bridge, and cuts between hosts.

Each host (a RabbitMQ node, PostgreSQL, the gateway, the client, each worker) is a namespace of its own
with one veth into a bridge that lives in a hub namespace, and one address of SUBNET. The machine's own
namespace takes no part: no interface, address or route of it changes, and every process that talks to
these addresses runs inside a namespace (``ip netns exec``), so nothing is ever sent towards them
through the machine's own network. Namespaces are named ``edachaos-<pid of the run>-<host>`` (its
temporary folder ``edachaos-<pid>-*``): ``clean`` removes those of runs that are no longer alive (a run
killed by SIGKILL could not remove its own).

A cut drops, on the receiving side, every packet that comes from the other host: a policy-routing rule
``from ADDRESS iif veth0 blackhole``, placed before the local table (moved to preference 1000 when the
host is made). It is silent, as a failed switch or a firewall's DROP: new connections time out and
established ones stall until heartbeats or TCP give up; nothing is refused. ``iptables`` and ``nft`` are
not needed (not installed here), only iproute2's ``ip``.
"""

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

PREFIX = "edachaos"
SUBNET = "10.219.19"  # the hosts' addresses, inside their namespaces only: SUBNET.10, .11, ...
BRIDGE = "br0"
VETH = "veth0"  # every host's interface has this name, in its own namespace
CUT_PREF = 100  # cut rules come before the local table, which is moved to LOCAL_PREF
LOCAL_PREF = 1000


class NetworkError(Exception):
    """An ``ip`` command failed (its message quotes the command and its output)."""


def ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


@dataclasses.dataclass(frozen=True)
class Host:
    """One namespace of the run: its short name, namespace name and address."""

    name: str
    netns: str
    address: str

    def exec_prefix(self) -> list[str]:
        """The argv prefix that runs a command inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns]


class Network:
    """The hosts of one run, joined by a bridge; ``cut``/``heal`` partition pairs of them."""

    def __init__(self, names: list[str], run_id: int | None = None):
        self.run_id = run_id if run_id is not None else os.getpid()
        self.hub = f"{PREFIX}-{self.run_id}-hub"
        self.hosts = {name: Host(name, f"{PREFIX}-{self.run_id}-{name}", f"{SUBNET}.{10 + i}")
                      for i, name in enumerate(names)}
        self.cuts: set[frozenset] = set()
        self._made: list[str] = []

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def create(self) -> "Network":
        self._add_netns(self.hub)
        ip("-n", self.hub, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", self.hub, "link", "set", BRIDGE, "up")
        for host in self.hosts.values():
            self._add_netns(host.netns)
            peer = f"v-{host.name}"[:15]
            ip("link", "add", VETH, "netns", host.netns, "type", "veth", "peer", "name", peer, "netns", self.hub)
            ip("-n", self.hub, "link", "set", peer, "master", BRIDGE, "up")
            ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", VETH)
            ip("-n", host.netns, "link", "set", VETH, "up")
            ip("-n", host.netns, "link", "set", "lo", "up")
            # Cut rules must be read before the local table, which delivers local addresses otherwise.
            ip("-n", host.netns, "rule", "add", "pref", str(LOCAL_PREF), "lookup", "local")
            ip("-n", host.netns, "rule", "del", "pref", "0")
        return self

    def _add_netns(self, name: str) -> None:
        ip("netns", "add", name)
        self._made.append(name)

    def _rule(self, action: str, at: Host, source: Host) -> None:
        ip("-n", at.netns, "rule", action, "pref", str(CUT_PREF), "from", source.address, "iif", VETH, "blackhole",
           check=action == "add")

    def cut(self, a: str, b: str) -> None:
        """Drop every packet between hosts ``a`` and ``b``, both ways (a no-op when already cut)."""
        pair = frozenset((a, b))
        if pair in self.cuts:
            return
        self._rule("add", self[a], self[b])
        self._rule("add", self[b], self[a])
        self.cuts.add(pair)

    def heal(self, a: str, b: str) -> None:
        pair = frozenset((a, b))
        if pair not in self.cuts:
            return
        self._rule("del", self[a], self[b])
        self._rule("del", self[b], self[a])
        self.cuts.discard(pair)

    def cut_groups(self, group: list[str], others: list[str]) -> None:
        for a in group:
            for b in others:
                self.cut(a, b)

    def heal_groups(self, group: list[str], others: list[str]) -> None:
        for a in group:
            for b in others:
                self.heal(a, b)

    def heal_all(self) -> None:
        for pair in list(self.cuts):
            self.heal(*pair)

    def destroy(self) -> None:
        """Kill every process left in the run's namespaces and delete them (their veths go with them)."""
        remove_namespaces(self._made)
        self._made = []


def namespace_pids(netns: str) -> list[int]:
    out = ip("netns", "pids", netns, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def remove_namespaces(names: list[str]) -> None:
    """SIGKILL what still runs in each namespace (epmd, a node that would not stop), then delete it."""
    for name in names:
        for pid in namespace_pids(name):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(namespace_pids(n) for n in names):
        time.sleep(0.2)
    for name in names:
        ip("netns", "del", name, check=False)


def stale_namespaces() -> list[str]:
    """Namespaces of chaos runs whose process is gone (a run killed before it could clean up)."""
    stale = []
    for line in ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{PREFIX}-(\d+)-\S+", name)
        if match and not _alive(int(match.group(1))):
            stale.append(name)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean() -> list[str]:
    """Remove the namespaces of dead chaos runs, and their temporary folders; returns the namespaces."""
    stale = stale_namespaces()
    remove_namespaces(stale)
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*-*"):
        match = re.fullmatch(rf"{PREFIX}-(\d+)-.*", folder.name)
        if match and folder.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
    return stale
