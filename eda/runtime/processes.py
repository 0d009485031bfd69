"""``eda worker NAME... --processes N``: a parent that runs N complete worker processes and keeps them
running, as Dramatiq's and Celery's prefork parents do (one process uses one core at most: the GIL).

The parent connects to nothing. It starts the children (eda.runtime.children), restarts one that dies
with a growing delay, passes SIGTERM/SIGINT/SIGHUP on (as SIGTERM) and exits once every child has drained, tells systemd
READY=1 once every child consumes and WATCHDOG=1 while it supervises them (a child that stops answering
its own watchdog is killed and replaced), and serves the children's metrics, summed, on one port.

Exit codes, from the children's:
- 0: stopped by SIGTERM/SIGINT/SIGHUP, every child drained and exited 0;
- 1: a child had to be stopped unfinished (its shutdown timeout, or a second signal), or a child kept
  dying right after each restart (a crash loop: CRASH_LIMIT deaths in a row; a start the system refused,
  such as a fork without memory, counts as one);
- 2 or 3: a child exited so (2: a start error such as a bad setting, an unknown worker, a broker refusing
  the password; 3: the broker unreachable for the whole reconnect window): restarting cannot help, so the
  parent stops the others and exits with that code and that child's one-line error;
- any other death (a signal such as kill -9, an unexpected exit) is restarted.
"""

import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from eda.errors import ConfigError
from eda.runtime.children import Child, die_with_parent
from eda.systemd import Notifier, watchdog_interval
from eda.wakeup import WakeUp, on_stop_signals

log = logging.getLogger("eda.processes")

FATAL = (2, 3)  # exit codes that another start would only repeat
RESTART_DELAY, RESTART_DELAY_MAX = 0.5, 30.0  # seconds; doubled for each death in a row right after a start
STABLE = 10.0  # a child consuming for this long has started well: its death is not part of a crash loop
CRASH_LIMIT = 5  # deaths in a row, each right after its start, that end the parent
KILL_GRACE = 10.0  # seconds past the shutdown timeout before a child that is still running is killed
FORCED_WAIT = 5.0  # seconds children get to exit after the second signal


class Parent:
    """Runs ``processes`` copies of ``eda worker ARGS`` (``args``: the worker command's own arguments)."""

    def __init__(self, settings, args: list[str], names: list[str]):
        self.settings = settings
        self.count = settings.processes
        self.args = args
        self.names = names
        self.notifier = Notifier.from_env()
        self.children: list[Child] = []
        self.server = None  # the metrics server, where metrics are asked for
        self.metrics_dir = None
        self.child_watchdog = None  # seconds a child may stay silent: the parent's own WATCHDOG_USEC
        self._preexec = die_with_parent()
        self.stopping = self.forced = False
        self.fatal: tuple[int, str] | None = None  # (exit code, line) that ends the parent
        self.deadline = None
        self._stop_codes: list[int] = []  # how the children running at the stop exited
        self._signals = []
        self._all_ready = self._ready_sent = False

    # Lifecycle

    def run(self) -> int:
        self._wakeup = WakeUp()  # signals (SIGCHLD among them) wake the loop
        on_stop_signals(self._on_signal)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that a child's exit wakes the loop
        signal.set_wakeup_fd(self._wakeup.write_fd, warn_on_full_buffer=False)
        folder = tempfile.mkdtemp(prefix="eda-processes-")  # mode 0700: the notify sockets and metrics files
        try:
            env = self._child_env(folder)
            for number in range(1, self.count + 1):  # one by one: what was made is closed below, whatever fails
                self.children.append(self._child(number, folder, env))
            log.info("starting worker processes", extra={"processes": self.count, "workers": self.names})
            for child in self.children:
                self._start(child, time.monotonic())
            self._running_changed()
            return self._supervise()
        finally:
            self._end_children()
            for child in self.children:
                child.close()
            if self.server is not None:
                self.server.close()
            shutil.rmtree(folder, ignore_errors=True)
            signal.set_wakeup_fd(-1)
            self._wakeup.close()
            self.notifier.close()

    def _child(self, number: int, folder: str, env: dict) -> Child:
        try:
            return Child(number, folder, self._child_args(), env)
        except OSError as exc:  # "AF_UNIX path too long": a UNIX socket's path holds at most 107 bytes
            raise ConfigError(f"--processes: cannot make the worker processes' notify socket in {folder}: "
                              f"{exc.strerror or exc} (TMPDIR names where; a shorter one is needed)") from None

    def _child_args(self) -> list[str]:
        """The worker command's arguments with ``--processes 1`` (the last value given wins), before a ``--``."""
        at = self.args.index("--") if "--" in self.args else len(self.args)
        return ["worker", *self.args[:at], "--processes", "1", *self.args[at:]]

    def _child_env(self, folder: str) -> dict:
        from eda import app

        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        env["EDA_PROCESSES"] = "1"
        apps = app.app_modules()  # `eda --app X worker ...`: X is not among the worker command's arguments
        if apps:
            env["EDA_APP"] = ",".join(apps)
        if watchdog_interval(os.environ) is not None:  # each child answers the parent as the parent answers systemd
            env["WATCHDOG_USEC"] = os.environ["WATCHDOG_USEC"]
            self.child_watchdog = int(os.environ["WATCHDOG_USEC"]) / 1_000_000
        if self.settings.metrics_port is not None:
            from eda.metrics import SERVED_BY_PARENT, serve_processes

            metrics = os.path.join(folder, "metrics")
            os.mkdir(metrics)
            self.metrics_dir = metrics
            self.server = serve_processes(self.settings.metrics_port, self.settings.metrics_address, metrics)
            env.update({"PROMETHEUS_MULTIPROC_DIR": metrics, SERVED_BY_PARENT: "1"})
        return env

    def _on_signal(self, signum, frame):
        self._signals.append(signum)

    # The loop

    def _supervise(self) -> int:
        while True:
            self._wait()
            now = time.monotonic()
            while self._signals:
                signum = self._signals.pop(0)
                if not self.stopping:
                    self._stop(f"{signal.Signals(signum).name} received")
                elif not self.forced:
                    self._force()
            for child in self.children:
                child.messages(now)
                self._forward(child, child.stderr_lines())
                code = child.reap()
                if code is not None:
                    self._exited(child, code, now)
            if not self.stopping:
                self._restart_due(now)
                self._check_watchdogs(now)
            self._report()
            if self.stopping:
                if not any(c.alive for c in self.children):
                    return self._exit_code()
                if now > self.deadline:
                    for child in [c for c in self.children if c.alive]:
                        log.warning("worker process still running: killing it", extra={"pid": child.pid})
                        child.send(signal.SIGKILL)
                    self.deadline = now + FORCED_WAIT

    def _wait(self) -> None:
        timeout = 1.0 if self.notifier.watchdog is None else min(1.0, self.notifier.watchdog)
        due = [c.restart_at for c in self.children if c.restart_at is not None]
        if due and not self.stopping:
            timeout = max(0.0, min(timeout, min(due) - time.monotonic()))
        fds = [self._wakeup.read_fd, *(c.listener for c in self.children)]
        fds += [c.proc.stderr for c in self.children if c.proc is not None and not c.proc.stderr.closed]
        select.select(fds, [], [], timeout)
        self._wakeup.clear()

    def _forward(self, child: Child, lines: list[str]) -> None:
        """A child's stderr, on the parent's; its ``error:`` line is held until it exits (see ``_exited``)."""
        for line in lines:
            if line.startswith("error: "):
                if child.error_line is not None:
                    print(child.error_line, file=sys.stderr, flush=True)
                child.error_line = line
            else:
                print(line, file=sys.stderr, flush=True)

    def _exited(self, child: Child, code: int, now: float) -> None:
        self._forward(child, child.stderr_lines())  # the rest of what it wrote
        if self.server is not None:
            from eda.metrics import process_exited

            process_exited(child.pid, self.metrics_dir)
        how = {"pid": child.pid, "process_number": child.number, **child.how_it_ended()}
        self._running_changed()
        if self.stopping:
            self._stop_codes.append(self._code_of(code))
            log.info("worker process exited", extra=how)
            if child.error_line and (self.fatal is None or child.error_line != self.fatal[1]):
                print(child.error_line, file=sys.stderr, flush=True)
            return
        if code in FATAL:
            self.fatal = (code, child.error_line or f"error: worker process {child.pid} exited {code}")
            log.error("worker process cannot run: stopping the others", extra=how)
            return self._stop("a worker process cannot run")
        if child.error_line:
            print(child.error_line, file=sys.stderr, flush=True)
        quick = child.ready_at is None or now - child.ready_at < STABLE
        child.strikes = child.strikes + 1 if quick else 1
        if child.strikes >= CRASH_LIMIT:
            ended = f"exit code {code}" if how["exit_code"] is not None else f"signal {how['signal']}"
            self.fatal = (1, f"error: worker process {child.number} of {self.count} died {child.strikes} times in a "
                             f"row, each soon after it started (last: {ended}); stopping")
            log.error("worker processes crash in a loop: stopping", extra={**how, "deaths": child.strikes})
            return self._stop("crash loop")
        delay = self._restart_later(child, now)
        if self.server is not None:
            self.server.restarts.inc()
        log.warning("worker process exited: restarting it", extra={**how, "restart_in_seconds": delay})

    def _restart_due(self, now: float) -> None:
        for child in self.children:
            first = child.proc is None  # its first start had failed
            if child.restart_at is not None and now >= child.restart_at and self._start(child, now):
                log.info("worker process started" if first else "worker process restarted",
                         extra={"pid": child.pid, "process_number": child.number})
                self._running_changed()

    def _start(self, child: Child, now: float) -> bool:
        """Start one worker process. A fork that fails (no memory after an OOM kill, too many processes)
        counts as a death right after a start: tried again later, a crash loop if it keeps failing."""
        try:
            child.start(self._preexec)
            return True
        except OSError as exc:
            child.restart_at = None
            child.strikes += 1
            error = exc.strerror or str(exc)
            fields = {"process_number": child.number, "error": error}
            if child.strikes >= CRASH_LIMIT:
                self.fatal = (1, f"error: worker process {child.number} of {self.count} could not be started "
                                 f"{child.strikes} times in a row ({error}); stopping")
                log.error("worker process cannot be started: stopping", extra=fields)
                self._stop("cannot start a worker process")
            else:
                delay = self._restart_later(child, now)
                log.warning("cannot start a worker process: trying again", extra={**fields, "restart_in_seconds": delay})
            return False

    @staticmethod
    def _restart_later(child: Child, now: float) -> float:
        """Its next start, after a delay doubling with each death (or failed start) in a row; the delay."""
        delay = min(RESTART_DELAY_MAX, RESTART_DELAY * 2 ** (child.strikes - 1))
        child.restart_at = now + delay
        return delay

    def _end_children(self) -> None:
        """Nothing is left behind, whatever ended the loop: children still running (the loop ended by an
        error of the parent's) get SIGTERM and their shutdown time, then SIGKILL."""
        alive = [c for c in self.children if c.alive]
        for child in alive:
            child.send(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_timeout + KILL_GRACE
        for child in alive:
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.send(signal.SIGKILL)
                child.proc.wait()

    def _check_watchdogs(self, now: float) -> None:
        """A child that answered its watchdog before and stopped answering is hung: kill it (then restarted)."""
        if not self.child_watchdog:
            return
        for child in self.children:
            if child.alive and child.last_ping is not None and now - child.last_ping > self.child_watchdog:
                log.warning("worker process stopped answering its watchdog: killing it",
                            extra={"pid": child.pid, "process_number": child.number,
                                   "silent_seconds": round(now - child.last_ping, 1)})
                child.last_ping = None
                child.send(signal.SIGKILL)

    def _stop(self, reason: str) -> None:
        """Begin a graceful stop: SIGTERM to every child, none restarted; killed past the timeout."""
        self.stopping = True
        self.deadline = time.monotonic() + self.settings.shutdown_timeout + KILL_GRACE
        alive = [c for c in self.children if c.alive]
        for child in self.children:
            child.restart_at = None
            child.send(signal.SIGTERM)
        log.info("%s: stopping the worker processes", reason, extra={"pids": [c.pid for c in alive]})
        self.notifier.notify(STOPPING=1, STATUS=f"stopping: {len(alive)} worker processes finish their handlers")

    def _force(self) -> None:
        """The second signal: every child is told again, and a second signal stops a worker at once."""
        self.forced = True
        self.deadline = time.monotonic() + FORCED_WAIT
        log.warning("second signal: the worker processes stop now; unfinished events will be redelivered")
        for child in self.children:
            child.send(signal.SIGTERM)

    def _exit_code(self) -> int:
        if self.fatal is not None:
            code, line = self.fatal
            print(line, file=sys.stderr, flush=True)
            return code
        if self.forced:
            return 1
        log.info("stopped: every worker process exited")
        return max(self._stop_codes, default=0)  # a child that died before the stop was restarted, not stopped

    @staticmethod
    def _code_of(exited: int) -> int:
        """A child's exit code as the parent's: SIGTERM ending it before it could handle one is a clean stop
        (it held nothing yet), another signal (killed past the timeout) a forced one."""
        if exited == -signal.SIGTERM:
            return 0
        return 1 if exited < 0 else exited

    # What systemd and the metrics hear

    def _running_changed(self) -> None:
        if self.server is not None:
            self.server.processes.set(sum(c.alive for c in self.children))

    def _report(self) -> None:
        ready = sum(c.alive and c.ready for c in self.children)
        if ready == self.count and not self._all_ready and not self.stopping:
            log.info("all worker processes consuming", extra={"processes": self.count,
                                                               "pids": [c.pid for c in self.children]})
            status = f"consuming: {', '.join(self.names)} in {self.count} processes"
            if not self._ready_sent:  # READY once, as systemd wants it; later only the status changes
                self.notifier.notify(READY=1, STATUS=status)
                self._ready_sent = True
            else:
                self.notifier.notify(STATUS=status)
        elif ready < self.count and self._all_ready and not self.stopping:
            self.notifier.notify(STATUS=f"{ready} of {self.count} worker processes consuming")
        self._all_ready = ready == self.count
        self.notifier.ping_if_due()
