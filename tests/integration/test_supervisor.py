"""eda's workers under a real supervisord, run with deploy/supervisor/eda.conf on the test broker."""

import configparser
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from eda.settings import SPECS
from tests.support import EdaProcess, eda_command, wait_until
from eda import discovery

CONF = Path(__file__).resolve().parents[2] / "deploy" / "supervisor" / "eda.conf"
WORKERS = ("payment", "inventory", "shipping")
BIN = Path(sys.executable).parent


def programs() -> dict[str, configparser.SectionProxy]:
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    parser.read(CONF)
    return {s.split(":", 1)[1]: parser[s] for s in parser.sections() if s.startswith("program:")}


def test_every_program_runs_a_registered_worker_and_stops_it_gracefully():
    found = programs()
    assert sorted(found) == sorted([*(f"eda-{w}" for w in WORKERS), "eda-outbox-relay"])
    for name, program in found.items():
        command = program["command"].split()
        if name == "eda-outbox-relay":  # the transactional outbox's relay, run like a worker
            assert command == ["eda", "outbox", "relay"]
        else:
            assert command[:2] == ["eda", "worker"] and command[2:] == [name.removeprefix("eda-")]
            assert set(command[2:]) <= set(discovery.discover())
        assert program["stopsignal"] == "TERM"
        assert int(program["stopwaitsecs"]) > SPECS["shutdown_timeout"].default
        assert program["autorestart"] in ("true", "unexpected") and program.get("exitcodes", "0") == "0"
        assert program["stdout_logfile"] in ("/dev/stdout", "/dev/fd/1")
        assert program["stdout_logfile_maxbytes"] == "0" and program["redirect_stderr"] == "true"


class Supervisord(EdaProcess):
    """supervisord in the foreground with eda.conf; the workers' JSON lines arrive on its stdout."""

    def __init__(self, directory: Path, env: dict):
        self.dir = directory
        self.conf = directory / "supervisord.conf"
        # Only the process manager's own sections are the test's; the programs are eda.conf as shipped,
        # with `eda` being this environment's script.
        self.conf.write_text(f"""\
[unix_http_server]
file={directory}/supervisor.sock

[supervisord]
nodaemon=true
logfile={directory}/supervisord.log
pidfile={directory}/supervisord.pid
childlogdir={directory}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{directory}/supervisor.sock

""" + CONF.read_text().replace("command=eda ", f"command={' '.join(eda_command())} "))
        self.args = ["supervisord"]
        self.proc = subprocess.Popen([str(BIN / "supervisord"), "-n", "-c", str(self.conf)], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def ctl(self, *args) -> str:
        result = subprocess.run([str(BIN / "supervisorctl"), "-c", str(self.conf), *args], capture_output=True,
                                text=True, timeout=60)
        return result.stdout + result.stderr

    def pid(self, program) -> int:
        text = self.ctl("pid", program).strip()
        return int(text) if text.isdigit() else 0

    @property
    def log(self) -> str:
        path = self.dir / "supervisord.log"
        return path.read_text() if path.exists() else ""

    def consuming(self, worker) -> int:
        return self.count(lambda r: r.get("message") == "consuming" and r.get("worker") == worker)

    def shutdown(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # supervisord stops its programs with their stopsignal first
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def supervisord(tmp_path, env):
    directory = tmp_path / "supervisor"
    directory.mkdir()
    sup = Supervisord(directory, env)
    try:
        yield sup
    finally:
        sup.shutdown()


def test_supervisord_runs_the_workers_stops_one_gracefully_and_restarts_a_crashed_one(
        supervisord, eda, broker, make_order):
    # Given supervisord started with eda.conf: every worker starts and consumes
    for worker in WORKERS:
        supervisord.wait_for_log(lambda r, w=worker: r.get("message") == "consuming" and r.get("worker") == w,
                                 timeout=30, what=f"{worker} consuming")
    # When a worker that supervisord counts as up (RUNNING after startsecs) is killed outright
    wait_until(lambda: "RUNNING" in supervisord.ctl("status", "eda-shipping"), timeout=30, interval=0.2,
               message="eda-shipping RUNNING")
    crashed = supervisord.pid("eda-shipping")
    os.kill(crashed, signal.SIGKILL)
    # Then supervisord starts it again, and it consumes again
    wait_until(lambda: supervisord.pid("eda-shipping") not in (0, crashed), timeout=30, message="a new pid")
    wait_until(lambda: supervisord.consuming("shipping") == 2, timeout=30, message="shipping consuming again")
    assert "exited: eda-shipping (terminated by SIGKILL; not expected)" in supervisord.log
    # And an order flows through all three
    spy = broker.spy()
    eda.publish("stock-replenished", {"sku": "SKU-1", "quantity": 5})
    order = make_order()
    eda.publish("order-placed", order)
    assert spy.wait_for("order.shipped", timeout=30)[0]["data"]["orderId"] == order["orderId"]
    # When supervisorctl stops one
    assert "eda-payment: stopped" in supervisord.ctl("stop", "eda-payment")
    # Then it stopped gracefully: its handlers finished, exit status 0, and it is not restarted
    supervisord.wait_for_log(lambda r: r.get("message", "").startswith("SIGTERM received"), what="SIGTERM")
    supervisord.wait_for_log(lambda r: r.get("message", "").startswith("stopped: every running handler"),
                             what="the graceful stop")
    assert "stopped: eda-payment (exit status 0)" in supervisord.log
    assert "STOPPED" in supervisord.ctl("status", "eda-payment")
    assert "RUNNING" in supervisord.ctl("status", "eda-inventory")
