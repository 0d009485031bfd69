"""`eda worker NAME --processes N`: a parent of N real worker processes on a real broker, driven with real
signals; what a user sees (exit codes, log lines, events, queues, /metrics, systemd's notify socket)."""

import contextlib
import os
import signal
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import kombu
import pytest

from eda.topology import Topology
from tests.conftest import TEST_RETRY_DELAYS
from tests.monitoring import free_port, scrape
from tests.support import Accounting, wait_until

pytestmark = pytest.mark.integration

APP = "tests.integration.processes_app"


# Processes, read from /proc as `ps` does

def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# The parent's log lines

def all_consuming(record) -> bool:
    return record.get("message") == "all worker processes consuming"


def restarted(pid=None):
    return lambda r: r.get("message") == "worker process exited: restarting it" and (pid is None or r.get("pid") == pid)


def start_parent(eda, *args, processes=2, **env):
    """`eda worker ARGS --processes N`, once every worker process consumes; and its worker processes."""
    parent = eda.start("worker", *args, "--processes", str(processes), **env)
    parent.wait_for_log(all_consuming, timeout=60, what="every worker process consuming")
    kids = children_of(parent.proc.pid)
    assert len(kids) == processes, kids
    return parent, kids


@pytest.fixture
def app_queues(broker_url, namespace):
    """The test app's queues are deleted afterwards (the shared clean-up knows only installed workers)."""
    yield
    conn = kombu.Connection(broker_url)
    try:
        topology = Topology(namespace, tuple(int(d.rstrip("ms")) for d in TEST_RETRY_DELAYS.split(",")))
        for worker in ("chores", "crasher"):
            topology.delete_worker(conn.channel(), worker)
    finally:
        conn.release()


def test_a_process_killed_mid_batch_is_restarted_and_every_order_is_charged_once(eda, broker, gateway, namespace,
                                                                                 make_order):
    # Given payment in two processes, each holding at most 4 orders, on a gateway taking 0.4 s a charge
    gateway.simulation.latency = 0.4
    parent, kids = start_parent(eda, "payment", EDA_PAYMENT_GATEWAY_URL=gateway.url, EDA_CONCURRENCY=4,
                                EDA_PREFETCH=4)
    spy = broker.spy("payment.*")
    orders = 40
    order_ids = eda.publish("order-placed", *(make_order() for _ in range(orders)))
    # When one of them is killed with SIGKILL while its charges are under way
    spy.wait_for("payment.succeeded", count=6, timeout=30)
    wait_until(lambda: gateway.simulation.in_flight > 4, message="both processes charging")
    victim = kids[0]
    os.kill(victim, signal.SIGKILL)
    assert len(spy.of_type("payment.succeeded")) < orders, "the batch was over before the kill"
    # Then the parent says so in one line, with its pid, the signal and the delay, and starts another
    line = parent.wait_for_log(restarted(victim), timeout=15, what="the restart line")
    assert line["signal"] == "SIGKILL" and line["exit_code"] is None and line["restart_in_seconds"] > 0
    wait_until(lambda: parent.count(all_consuming) == 2, timeout=60, message="the new process consuming")
    now = children_of(parent.proc.pid)
    assert len(now) == 2 and victim not in now and kids[1] in now
    # And every order is paid, none charged twice, none dead-lettered
    Accounting(order_ids, spy=spy, broker=broker, dlqs=[f"{namespace}.payment.dlq"]).wait_all_accounted(60)
    assert {e["causationid"] for e in spy.of_type("payment.succeeded")} == set(order_ids)
    assert gateway.simulation.charges == orders
    assert broker.depth(f"{namespace}.payment.dlq") == 0
    assert parent.proc.poll() is None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_drains_every_process_and_leaves_none_behind(eda, broker, gateway, namespace, make_order, sig):
    # Given payment in two processes, both busy with charges on a slow gateway
    gateway.simulation.latency = 0.5
    parent, kids = start_parent(eda, "payment", EDA_PAYMENT_GATEWAY_URL=gateway.url, EDA_CONCURRENCY=4,
                                EDA_PREFETCH=4)
    spy = broker.spy("payment.*")
    order_ids = eda.publish("order-placed", *(make_order() for _ in range(40)))
    wait_until(lambda: gateway.simulation.in_flight > 4, message="both processes charging")
    # When the parent gets the signal
    parent.send(sig)
    # Then it exits 0 once both processes finished their running handlers and acked them
    assert parent.wait(timeout=30) == 0, parent.output
    stopped = [r for r in parent.records if str(r.get("message", "")).startswith("stopped: every running handler")]
    assert sorted(r.get("process_number") for r in stopped) == [1, 2]  # each process's lines say which it is
    exits = [r for r in parent.records if r.get("message") == "worker process exited"]
    assert sorted(r["pid"] for r in exits) == sorted(kids) and all(r["exit_code"] == 0 for r in exits)
    assert not [p for p in [parent.proc.pid, *kids] if running(p)]
    # every charge started was reported paid; what was not started waits in the queue
    paid = {e["causationid"] for e in spy.of_type("payment.succeeded")}
    assert 0 < len(paid) < len(order_ids)
    assert gateway.simulation.in_flight == 0 and gateway.simulation.charges == len(paid)
    wait_until(lambda: broker.depth(f"{namespace}.payment") == len(order_ids) - len(paid),
               message="the unpaid orders back in the queue")


def test_a_graceful_stop_right_after_a_crash_exits_0(eda):
    # Given two processes, one of which was just killed (the parent restarts it after a delay)
    parent, kids = start_parent(eda, "shipping")
    os.kill(kids[0], signal.SIGKILL)
    parent.wait_for_log(restarted(kids[0]))
    # When the parent is stopped meanwhile
    parent.send(signal.SIGTERM)
    # Then the stop is graceful: the crash before it was the restart's business, not the stop's
    assert parent.wait(timeout=30) == 0, parent.output
    assert not [p for p in children_of(parent.proc.pid) if running(p)]


def test_the_processes_of_a_parent_killed_with_sigkill_stop_gracefully(eda, broker, namespace):
    # Given two processes under a parent
    parent, kids = start_parent(eda, "shipping")
    try:
        # When the parent is killed, with no chance to pass anything on
        parent.send(signal.SIGKILL)
        # Then Linux tells each process (PR_SET_PDEATHSIG), which stops as after SIGTERM and leaves the queue
        wait_until(lambda: not [p for p in kids if running(p)], timeout=30, message="the worker processes gone")
        stopped = lambda r: str(r.get("message", "")).startswith("stopped: every running handler")  # noqa: E731
        wait_until(lambda: parent.count(stopped) == 2, message="both processes' graceful stop")
        assert broker.channel.queue_declare(f"{namespace}.shipping", passive=True).consumer_count == 0
    finally:
        for pid in [p for p in kids if running(p)]:  # orphans of a failed test: none left behind
            os.kill(pid, signal.SIGKILL)


def test_processes_that_lose_the_broker_for_the_reconnect_window_end_the_parent_with_3(eda):
    # Given no broker where the processes are told to connect, and a short reconnect window
    closed = free_port()
    code, output = eda.run("worker", "shipping", "--processes=2", EDA_RECONNECT_WINDOW=1.5, timeout=60,
                           EDA_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{closed}//")
    # Then the parent exits 3, as one worker process does, with one line, and restarts none
    assert code == 3, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "connection refused" in errors[0], output
    assert "restarting" not in output and "guest:guest" not in output


def test_a_second_signal_stops_the_processes_at_once(eda, broker, gateway, namespace, make_order):
    # Given two processes whose handlers will not finish for a long time
    gateway.simulation.latency = 30
    gateway.handle_error = lambda request, client_address: None  # the answers come after the workers are gone
    parent, kids = start_parent(eda, "payment", EDA_PAYMENT_GATEWAY_URL=gateway.url, EDA_PAYMENT_GATEWAY_TIMEOUT=60,
                                EDA_CONCURRENCY=2, EDA_PREFETCH=2, EDA_SHUTDOWN_TIMEOUT=120)
    order_ids = eda.publish("order-placed", *(make_order() for _ in range(4)))
    wait_until(lambda: gateway.simulation.in_flight == 4, message="four charges under way")
    # When SIGTERM begins a graceful stop and SIGINT follows
    parent.send(signal.SIGTERM)
    parent.wait_for_log(lambda r: "stopping the worker processes" in str(r.get("message", "")))
    wait_until(lambda: parent.count(lambda r: "finishing running handlers" in str(r.get("message", ""))) == 2,
               message="both processes stopping")
    parent.send(signal.SIGINT)
    # Then it exits 1 at once, its processes gone, and the orders they held are back in the queue
    assert parent.wait(timeout=15) == 1, parent.output
    assert parent.count(lambda r: "second signal" in str(r.get("message", ""))) >= 2  # the parent's and the workers'
    assert not [p for p in kids if running(p)]
    wait_until(lambda: broker.depth(f"{namespace}.payment") == len(order_ids), message="the orders back in the queue")


def test_a_process_that_cannot_start_ends_the_parent_with_its_one_line(eda, broker_url):
    # Given a broker that refuses the password
    parts = urlsplit(broker_url)
    wrong = urlunsplit(parts._replace(netloc=f"{parts.username}:wrong-{uuid.uuid4().hex[:6]}@{parts.hostname}:"
                                             f"{parts.port or 5672}"))
    # When three processes are started on it
    started = time.monotonic()
    code, output = eda.run("worker", "shipping", "--processes", "3", EDA_BROKER_URL=wrong, timeout=60)
    # Then the parent exits 2 with the worker's one line, once, and starts none again
    assert code == 2, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "access refused" in errors[0], output
    assert "wrong-" not in output and "Traceback" not in output
    assert "restarting" not in output
    assert time.monotonic() - started < 30
    records = [r for r in (eda.processes[-1].records) if r.get("logger") == "eda.processes"]
    pids = [r["pid"] for r in records if "pid" in r] + [p for r in records for p in r.get("pids", [])]
    assert pids and not [p for p in pids if running(p)]


def test_a_crash_loop_ends_the_parent_with_a_clear_line(eda, app_queues):
    # Given a worker that dies each time it starts
    started = time.monotonic()
    code, output = eda.run("worker", "crasher", "--processes", "2", EDA_APP=APP, timeout=90)
    # Then each death was restarted after a longer delay, until the parent gave up with exit 1
    assert code == 1, output
    assert output.splitlines()[-1].startswith("error: worker process ") and "died 5 times in a row" in output
    assert "signal SIGKILL" in output.splitlines()[-1]
    records = eda.processes[-1].records
    delays = {}
    for r in records:
        if restarted()(r):
            delays.setdefault(r["process_number"], []).append(r["restart_in_seconds"])
    assert [0.5, 1, 2, 4] in delays.values(), delays
    assert time.monotonic() - started < 60
    assert not children_of(eda.processes[-1].proc.pid)


@contextlib.contextmanager
def forks_failing(monkeypatch, after: int, times: int):
    """The parent's process starts fail as a fork does without memory (EAGAIN): the first ``after`` work,
    the next ``times`` fail, the rest work again. What fails is the system's, not the parent's."""
    from eda.runtime import children

    real, calls = children.subprocess.Popen, [0]

    def popen(*args, **kwargs):
        calls[0] += 1
        if after < calls[0] <= after + times:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real(*args, **kwargs)

    monkeypatch.setattr(children.subprocess, "Popen", popen)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)}
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def parent_in_this_process(eda, monkeypatch, tmp_path, worker="chores"):
    """A `--processes 2` parent of ``worker`` run by this test's process (on its main thread: signals)."""
    from eda.runtime.processes import Parent
    from eda.settings import Settings

    for key, value in {**eda.env, "EDA_APP": APP, "CHORES_RECORD": str(tmp_path / "record")}.items():
        monkeypatch.setenv(key, str(value))
    return Parent(Settings.from_env().with_(processes=2), [worker], [worker])


def test_a_restart_the_system_cannot_fork_is_tried_again_and_the_other_process_keeps_working(
        eda, broker, namespace, app_queues, tmp_path, monkeypatch, caplog):
    caplog.set_level("INFO", logger="eda.processes")
    parent = parent_in_this_process(eda, monkeypatch, tmp_path)
    seen = {}

    def kill_one_then_stop():  # on a thread: the parent runs on the main one
        wait_until(lambda: sum(c.ready for c in parent.children) == 2, timeout=60, message="both consuming")
        first, second = parent.children
        killed = first.pid
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: first.pid != killed and first.alive and first.ready, timeout=60,
                   message="the first process back")
        seen["second alive"] = running(second.pid)
        os.kill(os.getpid(), signal.SIGTERM)

    # Given two worker processes, and a system that cannot fork twice once they are up
    with forks_failing(monkeypatch, after=2, times=2):
        thread = threading.Thread(target=kill_one_then_stop, daemon=True)
        thread.start()
        # When one is killed, then the parent is told to stop
        code = parent.run()
    thread.join(5)
    # Then the failed starts were tried again until one worked, the other process ran on, and all stopped well
    messages = [r.getMessage() for r in caplog.records if r.name == "eda.processes"]
    assert messages.count("cannot start a worker process: trying again") == 2, messages
    assert "worker process restarted" in messages and seen["second alive"] is True
    assert code == 0 and not children_of(os.getpid())


def test_a_process_the_system_never_can_fork_ends_the_parent_with_one_line_and_stops_the_other_gracefully(
        eda, app_queues, tmp_path, monkeypatch, capsys):
    parent = parent_in_this_process(eda, monkeypatch, tmp_path)

    def kill_one():
        wait_until(lambda: sum(c.ready for c in parent.children) == 2, timeout=60, message="both consuming")
        os.kill(parent.children[0].pid, signal.SIGKILL)

    # Given two worker processes, and a system that can fork no more once they are up
    with forks_failing(monkeypatch, after=2, times=100):
        threading.Thread(target=kill_one, daemon=True).start()
        # When one is killed
        code = parent.run()
    # Then the parent tries again (5 times in a row, with growing delays), then ends with exit 1 and one
    # line, the other process stopped by SIGTERM (drained), not killed
    assert code == 1
    assert capsys.readouterr().err.splitlines()[-1] == ("error: worker process 1 of 2 could not be started 5 times in a "
                                                          "row (Resource temporarily unavailable); stopping")
    assert parent.children[1].exited == 0 and not children_of(os.getpid())


def test_systemd_hears_ready_once_every_process_consumes_and_only_from_the_parent(eda, broker, namespace,
                                                                                  notify_socket):
    # Given three processes started as systemd starts a Type=notify unit with WatchdogSec=2
    parent = eda.start("worker", "shipping", "--processes", "3", NOTIFY_SOCKET=notify_socket.name,
                       WATCHDOG_USEC=2_000_000)
    # When it says READY=1
    ready = notify_socket.wait_for("READY")
    # Then all three already consume from the queue
    assert broker.channel.queue_declare(f"{namespace}.shipping", passive=True).consumer_count == 3
    assert ready == {"READY": "1", "STATUS": "consuming: shipping in 3 processes"}
    # and it answers the watchdog while they run
    for _ in range(2):
        notify_socket.wait_for("WATCHDOG")
    # When systemd stops it
    parent.send(signal.SIGTERM)
    stopping = notify_socket.wait_for("STOPPING")
    assert stopping["STATUS"].startswith("stopping")
    assert parent.wait(timeout=30) == 0, parent.output
    notify_socket.drain()
    # Then systemd heard READY=1 once, and every message came from the parent, none from its processes
    assert [m for m in notify_socket.messages if "READY" in m] == [ready]
    assert set(notify_socket.senders) == {parent.proc.pid}


def test_a_process_that_stops_answering_its_watchdog_is_replaced(eda, notify_socket):
    # Given two processes under a parent that systemd watches every 3 s
    parent, kids = start_parent(eda, "shipping", NOTIFY_SOCKET=notify_socket.name, WATCHDOG_USEC=3_000_000)
    # When one of them hangs (stopped by SIGSTOP)
    os.kill(kids[0], signal.SIGSTOP)
    # Then the parent kills it and starts another, and keeps answering systemd's watchdog meanwhile
    parent.wait_for_log(lambda r: "stopped answering its watchdog" in str(r.get("message", "")) and
                        r.get("pid") == kids[0], timeout=20)
    assert parent.wait_for_log(restarted(kids[0]))["signal"] == "SIGKILL"
    wait_until(lambda: parent.count(all_consuming) == 2, timeout=60, message="the new process consuming")
    notify_socket.wait_for("WATCHDOG")
    assert not running(kids[0])


def handled_by(record) -> dict[str, int]:
    """event id -> the pid of the process that handled it (the chores worker's file)."""
    if not record.exists():
        return {}
    return {event_id: int(pid) for pid, event_id in (line.split() for line in record.read_text().splitlines())}


def test_one_metrics_endpoint_sums_the_processes(eda, tmp_path, app_queues):
    # Given two processes of a worker that takes 50 ms a chore, one chore at a time each, serving metrics
    port, record = free_port(), tmp_path / "handled.txt"
    app = dict(EDA_APP=APP, CHORES_RECORD=record, CHORES_SLEEP="0.05", EDA_PREFETCH=1, EDA_CONCURRENCY=1)
    parent, kids = start_parent(eda, "chores", EDA_METRICS_PORT=port, **app)
    # When 30 chores are done, by both processes
    ids = eda.publish("chore-requested", *({"choreId": f"c-{i}"} for i in range(30)), EDA_APP=APP)
    done = wait_until(lambda: (lambda h: h if len(h) == 30 else None)(handled_by(record)), timeout=60,
                      message="30 chores done")
    assert set(done) == set(ids) and set(done.values()) == set(kids)
    # Then one scrape of the parent's port counts them all, with the processes' gauges combined
    consumed = ("eda_events_consumed_total",
                (("event_type", "chore.requested"), ("outcome", "ok"), ("worker", "chores")))
    samples = wait_until(lambda: (lambda s: s if s.get(consumed) == 30 else None)(scrape(port)),
                         message="the handled counter at 30")
    assert samples[("eda_handler_duration_seconds_count", (("event_type", "chore.requested"),
                                                           ("worker", "chores")))] == 30
    assert samples[("eda_broker_connected", (("worker", "chores"),))] == 1
    in_flight = ("eda_handlers_in_flight", (("worker", "chores"),))  # each process writes it every second
    wait_until(lambda: scrape(port).get(in_flight) == 0, message="no handler running")
    assert samples[("eda_worker_processes", ())] == 2
    # When one process is killed and replaced
    os.kill(kids[0], signal.SIGKILL)
    parent.wait_for_log(restarted(kids[0]))
    wait_until(lambda: parent.count(all_consuming) == 2, timeout=60, message="the new process consuming")
    # Then its counts stay in the sums, and the restart is counted
    connected = ("eda_broker_connected", (("worker", "chores"),))
    samples = wait_until(lambda: (lambda s: s if s.get(connected) == 1 else None)(scrape(port)),
                         message="the new process connected")
    assert samples[consumed] == 30
    assert samples[("eda_worker_process_restarts_total", ())] == 1


@contextlib.contextmanager
def confined_to(cpus):
    """Processes started meanwhile may run on ``cpus`` only (they inherit this process's affinity, as
    under ``taskset``)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def test_a_busy_metrics_port_is_a_one_line_error_before_any_process_starts(eda):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        code, output = eda.run("worker", "shipping", "--processes=2", EDA_METRICS_PORT=busy.getsockname()[1])
    assert code == 2, output
    assert output.startswith("error: --metrics-port (EDA_METRICS_PORT): cannot listen on ") and \
        len(output.splitlines()) == 1, output


def test_a_temporary_folder_too_deep_for_a_unix_socket_is_a_one_line_error_before_any_process_starts(eda, tmp_path):
    # Given a TMPDIR whose path leaves no room for a notify socket's (107 bytes at most)
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    # When a parent of two processes is started, then it says so in one line and exits 2, having started none
    code, output = eda.run("worker", "shipping", "--processes=2", TMPDIR=deep, timeout=60)
    assert code == 2, output
    assert output.startswith("error: --processes: cannot make the worker processes' notify socket in ") and \
        "path too long" in output and len(output.splitlines()) == 1, output
    assert list(deep.iterdir()) == []  # its folder removed


def test_processes_auto_is_the_cores_this_process_may_use(eda):
    # Given a machine with two cores or more, and no CPU quota below two cores (this project's machines)
    cpus = sorted(os.sched_getaffinity(0))
    assert len(cpus) >= 2, "needs two cores"
    # When the worker may use one core, auto is one process: the worker itself, no parent
    with confined_to(cpus[:1]):
        single = eda.start("worker", "shipping", "--processes=auto")
    single.wait_for_log(lambda r: r.get("message") == "consuming", timeout=60)
    assert children_of(single.proc.pid) == [] and not single.count(all_consuming)
    # When it may use two, auto is two processes under a parent
    with confined_to(cpus[:2]):
        parent = eda.start("worker", "shipping", "--processes=auto")
    parent.wait_for_log(all_consuming, timeout=60)
    assert parent.wait_for_log(lambda r: r.get("message") == "starting worker processes")["processes"] == 2
    assert len(children_of(parent.proc.pid)) == 2


def test_processes_1_is_the_single_worker_process(eda):
    worker = eda.start("worker", "shipping", "--processes=1").wait_ready()
    assert children_of(worker.proc.pid) == [] and not worker.count(all_consuming)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "129", "2.5"])
@pytest.mark.parametrize("how", ["option", "variable"])
def test_a_bad_number_of_processes_is_a_one_line_error(eda, value, how):
    if how == "option":
        code, output = eda.run("worker", "shipping", f"--processes={value}", timeout=30)
    else:
        code, output = eda.run("worker", "shipping", EDA_PROCESSES=value, timeout=30)
    assert code == 2, output
    assert output.startswith("error: --processes (EDA_PROCESSES): ") and len(output.splitlines()) == 1, output
