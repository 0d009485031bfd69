"""Confining a process to a fraction of a core: a CPU quota of a cgroup of its own.

Scale-out on one machine is measured honestly only where each instance gets the same, bounded share
of the CPU and all of them together stay under the machine's cores: otherwise one instance spreads
over both cores and three fight over them. The quota is the kernel's CFS bandwidth control: cgroup v2's
``cpu.max`` (``QUOTA PERIOD``) where the unified hierarchy has the cpu controller, else cgroup v1's
``cpu.cfs_quota_us``/``cpu.cfs_period_us``. A process joins its cgroup before it runs any Python of its
own (``preexec_fn``), so start-up counts against it too. Needs root (or a delegated cgroup).
"""

import os
import uuid
from pathlib import Path

PERIOD_US = 100_000
V2_ROOT = Path("/sys/fs/cgroup")
V1_ROOT = Path("/sys/fs/cgroup/cpu")


class Unavailable(RuntimeError):
    """No cgroup with a CPU quota can be made here (no controller, or not root)."""


def _v2_root() -> Path | None:
    controllers = V2_ROOT / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return V2_ROOT
    return None


def _v1_root() -> Path | None:
    return V1_ROOT if (V1_ROOT / "cpu.cfs_quota_us").exists() else None


class CpuQuota:
    """A cgroup of its own holding at most ``cores`` of CPU time (e.g. 0.25: a quarter of one core)."""

    def __init__(self, cores: float, label: str = "eda-bench"):
        if not 0 < cores:
            raise ValueError(f"cores must be positive, not {cores}")
        self.cores = cores
        quota = max(1000, int(cores * PERIOD_US))
        name = f"{label}-{uuid.uuid4().hex[:8]}"
        root = _v2_root()
        try:
            if root is not None:
                if "cpu" not in (root / "cgroup.subtree_control").read_text().split():
                    (root / "cgroup.subtree_control").write_text("+cpu")
                self.path = root / name
                self.path.mkdir()
                (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
                self.kind = "cgroup v2 cpu.max"
            elif (root := _v1_root()) is not None:
                self.path = root / name
                self.path.mkdir()
                (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (self.path / "cpu.cfs_quota_us").write_text(str(quota))
                self.kind = "cgroup v1 cpu.cfs_quota_us"
            else:
                raise Unavailable("no cgroup cpu controller on this machine")
        except OSError as exc:
            raise Unavailable(f"cannot make a cgroup with a CPU quota: {exc}") from None
        self.procs = self.path / "cgroup.procs"
        self.describe = f"{cores:g} core each ({self.kind} {quota} µs per {PERIOD_US} µs)"

    def join(self) -> None:
        """Move the calling process into the cgroup (for ``subprocess.Popen(preexec_fn=...)``)."""
        self.procs.write_text(str(os.getpid()))

    def throttled_seconds(self) -> float:
        """Seconds the cgroup's processes were held back by the quota (the quota bound, measured)."""
        stat = {}
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            stat[key] = int(value) if value.isdigit() else 0
        if "throttled_usec" in stat:
            return stat["throttled_usec"] / 1e6
        return stat.get("throttled_time", 0) / 1e9

    def remove(self) -> None:
        """Delete the cgroup once its processes ended (a cgroup with members cannot be removed)."""
        try:
            self.path.rmdir()
        except OSError:
            pass
