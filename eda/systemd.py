"""systemd's notify protocol for ``Type=notify`` units: READY, WATCHDOG, STOPPING and STATUS.

The protocol (sd_notify(3)) is one datagram of ``KEY=value`` lines to the AF_UNIX socket named in
NOTIFY_SOCKET ('@' starts an abstract name); the standard library is enough, so no libsystemd.
Outside systemd NOTIFY_SOCKET is unset and the notifier does nothing.
"""

import logging
import os
import socket
import time

from eda.middleware import Middleware

log = logging.getLogger("eda.systemd")


def socket_address(value: str) -> str | bytes:
    """The address to send to: a path, or an abstract name ('@name' -> b'\\0name')."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_interval(environ) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises.

    None where no watchdog is asked for, or where WATCHDOG_PID names another process.
    """
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        usec = int(usec)
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None


class Notifier:
    """Sends notify messages to systemd; a notifier without a socket sends nothing."""

    def __init__(self, address: str | None, watchdog: float | None = None):
        self.address = socket_address(address) if address else None
        self.watchdog = watchdog if self.address else None
        self._sock = None
        self._last_ping = 0.0

    @classmethod
    def from_env(cls, environ=None) -> "Notifier":
        environ = os.environ if environ is None else environ
        return cls(environ.get("NOTIFY_SOCKET") or None, watchdog_interval(environ))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields) -> bool:
        """Send ``KEY=value`` lines (``notify(READY=1, STATUS="...")``); False if it could not be sent."""
        if not self.enabled:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self.address)
            return True
        except OSError as exc:  # systemd gone or socket unreachable: never a reason to stop working
            log.debug("cannot notify systemd: %s", exc)
            return False

    def ping_if_due(self, now: float | None = None) -> bool:
        """WATCHDOG=1 if the watchdog's half interval has passed since the last ping."""
        if self.watchdog is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self._last_ping < self.watchdog:
            return False
        self._last_ping = now
        return self.notify(WATCHDOG=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class SystemdNotify(Middleware):
    """A process-wide middleware that only observes: tells systemd the worker is ready once it consumes, answers the watchdog while the I/O loop
    runs, and reports reconnects and the graceful stop as STATUS lines."""

    def __init__(self, notifier: Notifier | None = None):
        self.notifier = notifier or Notifier.from_env()

    @staticmethod
    def _names(runner) -> str:
        return ", ".join(w.name for w in runner.workers)

    def on_ready(self, runner) -> None:
        # Sent after every consumer's basic.consume was answered: systemd then starts what is ordered After=.
        self.notifier.notify(READY=1, STATUS=f"consuming: {self._names(runner)}")
        self.notifier.ping_if_due()

    def on_tick(self, runner) -> None:
        self.notifier.ping_if_due()

    def on_connection_lost(self, runner, reason: str) -> None:
        # The reconnect loop is alive too: keep the watchdog fed; the reconnect window ends it if need be.
        self.notifier.notify(STATUS=f"reconnecting: {reason}")
        self.notifier.ping_if_due()

    def on_stopping(self, runner) -> None:
        self.notifier.notify(STOPPING=1, STATUS=f"stopping: finishing running handlers of {self._names(runner)}")


def parse(datagram: bytes) -> dict:
    """A notify message as a dict of its ``KEY=value`` lines."""
    lines = datagram.decode("utf-8", errors="replace").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


class NotifyListener:
    """The receiving end of the protocol, for a parent in systemd's role: the parent of ``eda worker
    --processes N`` gives each worker process one as its NOTIFY_SOCKET. A path in a folder only its owner
    may enter (an abstract name could be written to by any process of the host)."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.bind(self.path)
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> list[dict]:
        """Every message waiting, oldest first."""
        messages = []
        while True:
            try:
                messages.append(parse(self.sock.recv(4096)))
            except (BlockingIOError, InterruptedError):
                return messages

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
