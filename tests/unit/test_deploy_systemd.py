"""The systemd unit and its env file: the keys the worker relies on, and systemd's own verdict."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from eda.settings import SPECS
from tests.support import eda_command, in_ci

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNIT = DEPLOY / "eda-worker@.service"
HARDENING = ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
             "RestrictAddressFamilies", "CapabilityBoundingSet", "SystemCallFilter")


def workers_own_settings():
    """The settings the known workers declare themselves (payment's gateway URL, inventory's threshold),
    by the variable each reads (EDA_PAYMENT_GATEWAY_URL, EDA_INVENTORY_STOCK_THRESHOLD)."""
    from eda import discovery
    from eda.worker_settings import declared

    return {s.variable(cls.name): s for cls in discovery.discover().values() for s in declared(cls)}


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file, each key with every value it is given (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    """A systemd time span as seconds ("45", "45s", "1min 30s")."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value))


@pytest.fixture(scope="module")
def unit():
    return parse_unit(UNIT.read_text())


def one(unit, section, key):
    values = unit[section].get(key)
    assert values, f"[{section}] {key}= is missing"
    return values[-1]


def test_the_unit_is_a_notify_service_with_a_watchdog_the_worker_can_feed(unit):
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    # The worker pings from its I/O loop, which ticks about once a second: the watchdog must allow a few ticks.
    assert seconds(one(unit, "Service", "WatchdogSec")) >= 5


def test_the_unit_runs_the_instance_named_worker_with_the_env_file_and_state_dir(unit):
    command = one(unit, "Service", "ExecStart").split()
    assert Path(command[0]).name == "eda" and command[1:] == ["worker", "%i"]
    assert one(unit, "Service", "EnvironmentFile") == "/etc/eda/eda.env"
    assert one(unit, "Service", "StateDirectory") == "eda"
    assert "EDA_STATE_DIR=/var/lib/eda" in unit["Service"]["Environment"]
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_the_unit_stops_gracefully_after_the_shutdown_timeout_and_restarts_on_failure(unit):
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    # SIGTERM to the main process only: the parent of EDA_PROCESSES > 1 passes it on once (a second would stop
    # a worker process at once), SIGKILL to every process left at the timeout.
    assert one(unit, "Service", "KillMode") == "mixed"
    assert seconds(one(unit, "Service", "TimeoutStopSec")) > SPECS["shutdown_timeout"].default
    # the database's wait, then the broker's, each up to the reconnect window
    assert seconds(one(unit, "Service", "TimeoutStartSec")) > 2 * SPECS["reconnect_window"].default
    assert one(unit, "Service", "Restart") == "on-failure"


def test_the_unit_is_hardened(unit):
    for key in HARDENING:
        one(unit, "Service", key)
    assert one(unit, "Service", "NoNewPrivileges") == "yes"
    assert one(unit, "Service", "ProtectSystem") == "strict"
    # The notify socket is AF_UNIX: restricting it away would silence READY=1.
    assert "AF_UNIX" in one(unit, "Service", "RestrictAddressFamilies").split()
    assert one(unit, "Service", "DynamicUser") == "yes" or one(unit, "Service", "User")


def test_the_env_example_sets_only_settings_eda_knows():
    # Commented-out lines are documentation of settings too: they must be real ones.
    lines = re.findall(r"^#?(EDA_[A-Z_]+)=", (DEPLOY / "eda.env.example").read_text(), flags=re.M)
    known = {spec.env for spec in SPECS.values()} | set(workers_own_settings())
    assert "EDA_BROKER_URL" in lines and "EDA_BROKER_URL_FILE" in lines
    assert set(lines) - known == set()


def systemd_analyze_verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    # verify checks that ExecStart exists: point it at this environment's `eda`.
    (tmp_path / UNIT.name).write_text(text.replace("/usr/local/bin/eda", eda_command()[0]))
    return subprocess.run(["systemd-analyze", "verify", str(tmp_path / "eda-worker@payment.service")],
                          capture_output=True, text=True, timeout=60)


def test_systemd_analyze_verifies_the_unit(tmp_path, unit):
    if shutil.which("systemd-analyze") is None:
        message = "systemd-analyze is not installed (apt-get install systemd)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    result = systemd_analyze_verify(tmp_path, UNIT.read_text())
    assert result.returncode == 0, result.stderr
    assert "Unknown" not in result.stderr and "ignoring" not in result.stderr, result.stderr
    # And the check has teeth: a misspelled key is reported.
    broken = systemd_analyze_verify(tmp_path, UNIT.read_text().replace("WatchdogSec=", "WatchdocSec="))
    assert "Unknown key 'WatchdocSec'" in broken.stderr
