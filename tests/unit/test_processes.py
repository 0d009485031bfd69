"""`--processes N|auto`: the cores a process may use (affinity, cgroup quotas), the setting, and what the
parent runs for each worker process and makes of its exit code."""

import os
import signal

import pytest

from eda.cores import available_cores, cpu_quota
from eda.errors import ConfigError
from eda.runtime.processes import Parent
from eda.settings import MAX_PROCESSES, Settings


def cgroup_tree(tmp_path, membership: str, files: dict) -> tuple:
    """A fake /proc/self/cgroup holding ``membership`` and a fake /sys/fs/cgroup holding ``files``."""
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "cgroup").write_text(membership)
    fs = tmp_path / "cgroup"
    fs.mkdir()
    for path, text in files.items():
        (fs / path).parent.mkdir(parents=True, exist_ok=True)
        (fs / path).write_text(text)
    return tmp_path / "proc", fs


def test_a_cgroup_v2_quota_counts_in_cores_the_smallest_of_the_cgroup_and_its_parents(tmp_path):
    proc, fs = cgroup_tree(tmp_path, "0::/system.slice/eda.service\n", {
        "cpu.max": "max 100000\n",
        "system.slice/cpu.max": "300000 100000\n",
        "system.slice/eda.service/cpu.max": "150000 100000\n",
    })
    assert cpu_quota(proc / "self" / "cgroup", fs) == 1.5
    assert available_cores(proc, fs) == min(2, len(os.sched_getaffinity(0)))  # 1.5 cores: 2 processes


def test_no_quota_leaves_the_affinity(tmp_path):
    proc, fs = cgroup_tree(tmp_path, "0::/user.slice\n", {"user.slice/cpu.max": "max 100000\n"})
    assert cpu_quota(proc / "self" / "cgroup", fs) is None
    assert available_cores(proc, fs) == len(os.sched_getaffinity(0))


def test_a_cgroup_v1_quota_in_a_container_without_a_cgroup_namespace(tmp_path):
    # /proc/self/cgroup names the host's folder; the container sees its own cgroup at the mount's root
    proc, fs = cgroup_tree(tmp_path, "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n", {
        "cpu,cpuacct/cpu.cfs_quota_us": "100000\n",
        "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    })
    assert cpu_quota(proc / "self" / "cgroup", fs) == 1.0
    assert available_cores(proc, fs) == 1


def test_a_cgroup_v1_quota_of_minus_one_is_none(tmp_path):
    proc, fs = cgroup_tree(tmp_path, "3:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n",
                                                   "cpu/cpu.cfs_period_us": "100000\n"})
    assert cpu_quota(proc / "self" / "cgroup", fs) is None


def test_without_cgroup_files_the_affinity_counts(tmp_path):
    assert cpu_quota(tmp_path / "missing", tmp_path) is None
    assert available_cores(tmp_path, tmp_path) == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", ["auto", "AUTO", " auto "])
def test_auto_is_the_available_cores(value):
    assert Settings(processes=value).processes == min(available_cores(), MAX_PROCESSES)


def test_processes_default_to_one_and_take_numbers_from_the_environment():
    assert Settings().processes == 1
    assert Settings.from_env({"EDA_PROCESSES": "3"}).processes == 3
    assert Settings.from_env({"EDA_PROCESSES": ""}).processes == 1


@pytest.mark.parametrize("value, message", [
    ("0", "must be at least 1"),
    ("-1", "must be at least 1"),
    ("abc", "'abc' is neither a number of processes nor auto"),
    ("1.5", "'1.5' is neither a number of processes nor auto"),
    ("129", "must be at most 128 (a broker connection and ~35 MB of memory each), not 129"),
])
def test_a_bad_number_of_processes_is_refused(value, message):
    with pytest.raises(ConfigError) as err:
        Settings(processes=value)
    assert str(err.value) == f"--processes (EDA_PROCESSES): {message}"


def test_each_worker_process_runs_the_same_command_with_one_process():
    parent = Parent(Settings(processes=2), ["payment", "--processes", "2", "--concurrency", "8"], ["payment"])
    assert parent._child_args() == ["worker", "payment", "--processes", "2", "--concurrency", "8", "--processes", "1"]
    parent = Parent(Settings(processes=2), ["--processes=2", "--", "payment"], ["payment"])
    assert parent._child_args() == ["worker", "--processes=2", "--processes", "1", "--", "payment"]


@pytest.mark.parametrize("exited, code", [(0, 0), (-signal.SIGTERM, 0), (1, 1), (-signal.SIGKILL, 1), (3, 3)])
def test_a_worker_process_exit_as_the_parent_counts_it_after_a_stop(exited, code):
    assert Parent._code_of(exited) == code
