"""One worker process of ``eda worker --processes N``, as its parent sees it.

A child is a fresh interpreter running the parent's own ``eda worker`` command with ``--processes 1``:
a complete worker with its own broker connection, its own signal handling and graceful stop. It is
spawned, not forked: by the time the parent knows what to run it has imported the app's modules, which
may have started threads or opened sockets and locks that a fork would copy half-way (a lock held by
another thread stays held in the child for good); a fresh interpreter shares nothing with the parent,
and works the same wherever it runs. It costs each child its own start-up (imports, ~0.5 s of CPU) once.

It tells the parent what systemd would hear from it, through a notify socket of the parent's
(``READY=1`` once consuming, ``WATCHDOG=1``, ``STATUS``, ``STOPPING=1``); its stdout (the log lines)
is the parent's, its stderr is read by the parent line by line. It runs in a process group of its own,
so that Ctrl-C at a terminal reaches the parent alone, which passes one SIGTERM on (two would stop the
child at once), and on Linux it is sent SIGTERM when the parent dies.
"""

import os
import signal
import subprocess
import sys
import time

from eda.logs import PROCESS_NUMBER
from eda.systemd import NotifyListener

CODE = "from eda.cli import main; main(prog_name='eda')"  # -P: the current directory is not put on the path


def die_with_parent():
    """A function for ``preexec_fn`` that asks Linux to send the child SIGTERM when the parent dies
    (``PR_SET_PDEATHSIG``); None elsewhere. Resolved here, so the child only makes the call."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec():
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the call: follow it
            os._exit(1)

    return preexec


class Child:
    """Worker process number ``number`` (1..N), started again in the same place after it dies."""

    def __init__(self, number: int, folder, args: list[str], env: dict):
        self.number = number
        self.listener = NotifyListener(os.path.join(folder, f"notify-{number}.sock"))
        self.command = [sys.executable, "-P", "-c", CODE, *args]
        # PROCESS_NUMBER: each of its log lines says which process wrote it (eda.logs), as the parent's do.
        self.env = {**env, "NOTIFY_SOCKET": self.listener.path, PROCESS_NUMBER: str(number)}
        self.proc: subprocess.Popen | None = None
        self.started_at = self.ready_at = self.last_ping = None
        self.ready = False
        self.error_line: str | None = None  # its last "error: ..." line on stderr, held until it exits
        self.strikes = 0  # deaths in a row, each right after its start
        self.restart_at: float | None = None
        self.exited: int | None = None  # the exit code of its last run, once reaped
        self._partial = b""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.exited is None

    def start(self, preexec=None) -> None:
        self.listener.receive()  # what the previous process of this number said last is not this one's
        self.proc = subprocess.Popen(self.command, env=self.env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     process_group=0, preexec_fn=preexec)
        os.set_blocking(self.proc.stderr.fileno(), False)
        self.started_at, self.ready_at, self.last_ping = time.monotonic(), None, None
        self.ready, self.error_line, self.exited, self.restart_at = False, None, None, None
        self._partial = b""

    def messages(self, now: float) -> list[dict]:
        """Its notify messages since the last call; readiness and the watchdog's last ping kept up to date."""
        messages = self.listener.receive() if self.alive else []
        for m in messages:
            if m.get("READY") == "1":
                self.ready = True
                self.ready_at = self.ready_at or now
            if m.get("STATUS", "").startswith("reconnecting"):
                self.ready = False  # it says READY=1 again once it consumes again
            if m.get("WATCHDOG") == "1" or m.get("READY") == "1":
                self.last_ping = now
        return messages

    def stderr_lines(self) -> list[str]:
        """The complete lines it wrote to stderr since the last call (all of it once it exited)."""
        if self.proc is None or self.proc.stderr.closed:
            return []
        fd, data = self.proc.stderr.fileno(), b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            if not chunk:
                break
            data += chunk
        *lines, self._partial = (self._partial + data).split(b"\n")
        if self.exited is not None:
            lines.append(self._partial)
            self._partial = b""
            self.proc.stderr.close()
        return [line.decode("utf-8", errors="replace") for line in lines if line]

    def reap(self) -> int | None:
        """Its exit code, once it exited (negative: the signal that ended it)."""
        if self.alive:
            self.exited = self.proc.poll()
            return self.exited
        return None

    def send(self, sig: int) -> None:
        if self.alive:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def how_it_ended(self) -> dict:
        """The exit code or the signal, for a log line."""
        code = self.exited
        if code is not None and code < 0:
            try:
                return {"exit_code": None, "signal": signal.Signals(-code).name}
            except ValueError:
                return {"exit_code": None, "signal": str(-code)}
        return {"exit_code": code, "signal": None}

    def close(self) -> None:
        self.listener.close()
        if self.proc is not None and self.proc.stderr and not self.proc.stderr.closed:
            self.proc.stderr.close()
