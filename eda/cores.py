"""How many cores this process may use, as ``--processes auto`` counts them: the CPUs of its affinity
mask (``taskset``, systemd's ``CPUAffinity=``, a container's cpuset) and its cgroup's CPU quota
(systemd's ``CPUQuota=``, ``docker run --cpus``), whichever allows fewer.

``os.cpu_count()`` sees neither; the quota is read from cgroup v2's ``cpu.max`` or cgroup v1's
``cpu.cfs_quota_us``/``cpu.cfs_period_us``, in the process's own cgroup and every one above it. A
fractional quota (1.5 cores) counts as the next whole core, as loky and the JVM count it.
"""

import math
import os
from pathlib import Path


def available_cores(proc: Path = Path("/proc"), cgroup_fs: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = cpu_quota(proc / "self" / "cgroup", cgroup_fs)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def cpu_quota(cgroup_file: Path, cgroup_fs: Path) -> float | None:
    """The smallest CPU quota (in cores) of this process's cgroup and its ancestors; None where none is set."""
    try:
        lines = cgroup_file.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and controllers == "":  # cgroup v2: one unified hierarchy
            quotas += [q for d in _dirs(cgroup_fs, path) if (q := _v2_quota(d / "cpu.max")) is not None]
        elif "cpu" in controllers.split(","):  # cgroup v1: the cpu controller's own hierarchy
            root = cgroup_fs / controllers
            root = root if root.is_dir() else cgroup_fs / "cpu"
            quotas += [q for d in _dirs(root, path) if (q := _v1_quota(d)) is not None]
    return min(quotas) if quotas else None


def _dirs(root: Path, path: str) -> list[Path]:
    """The cgroup's folder and its ancestors' under ``root``. In a container without a cgroup namespace the
    path names the host's folder, absent here: the container's own cgroup is then the root."""
    parts = [p for p in path.strip().split("/") if p and p != ".."]
    return [d for d in (root.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)) if d.is_dir()]


def _v2_quota(file: Path) -> float | None:
    try:
        quota, period = file.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None
