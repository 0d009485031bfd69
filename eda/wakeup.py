"""A wake-up pipe: how other threads wake a thread that owns a connection and waits in ``select``.

The waiting thread selects on ``read_fd`` beside its socket (``wait``) and calls ``clear`` before it
takes what it was woken for; any thread calls ``wake_once`` after handing something over (one byte per
wait is enough: a hand-over after ``clear`` writes again), or ``wake`` to interrupt the wait whatever
was written before (a stop).
"""

import os
import select
import signal
import socket
import weakref

from eda import frame_reader


# The signals that stop a worker, a --processes parent or the outbox relay gracefully: SIGTERM (a
# supervisor), SIGINT (Ctrl-C), and SIGHUP (its terminal closed): what runs finishes and is acked; a
# second one of any of them exits at once.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def on_stop_signals(handler) -> None:
    """``handler`` for each of STOP_SIGNALS, but a SIGHUP the process was told to ignore stays ignored
    (`nohup eda worker ...`: the terminal's closing must not stop it)."""
    for sig in STOP_SIGNALS:
        if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
            continue
        signal.signal(sig, handler)


def _close_fds(*fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class WakeUp:
    """The pipe's two ends, non-blocking; closed when collected, or at once by ``close``."""

    def __init__(self):
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self.pending = False  # a byte was written and not cleared yet
        # Closed only once nothing can write to it any more: a number closed earlier could be reused by
        # another file, which a late wake-up byte would then be written to. Not at exit: the write end
        # may be the signal wake-up fd until the process ends, which closes it.
        self._close = weakref.finalize(self, _close_fds, self.read_fd, self.write_fd)
        self._close.atexit = False

    def wake(self) -> None:
        try:
            os.write(self.write_fd, b"\0")
        except OSError:  # full (BlockingIOError): the thread wakes anyway; closed: nobody waits any more
            pass

    def wake_once(self) -> None:
        """Wake the thread unless a byte is waiting for it already."""
        if not self.pending:
            self.pending = True
            self.wake()

    def clear(self) -> None:
        """Take the bytes written; called before taking what was handed over, so that a hand-over after
        it wakes the thread again."""
        try:
            os.read(self.read_fd, 4096)
        except OSError:  # nothing written (BlockingIOError), or closed already
            pass
        self.pending = False

    def close(self) -> None:
        self._close()


def wait(connection, wakeup: WakeUp, timeout: float, driver=None) -> None:
    """Block until the py-amqp ``connection``'s socket has frames or ``wakeup`` was woken (at most
    ``timeout`` seconds), then hand every complete frame to py-amqp and clear the wake-up: the owning
    thread's wait in the worker's I/O loop and in the requester's. With ``driver`` (an
    eda.runtime.aio.DrivenLoop) the wait runs that event loop, and also ends when a task hands back."""
    reader = frame_reader.reader_of(connection)
    if reader is not None and reader.pending():
        timeout = 0  # frames read ahead by a synchronous call's wait: handle them now
    if driver is None:
        ready, _, _ = select.select([connection.sock, wakeup.read_fd], [], [], timeout)
        readable, woken = connection.sock in ready, wakeup.read_fd in ready
    else:
        readable, woken = driver.wait(connection.sock.fileno(), wakeup.read_fd, timeout)
    if woken:
        wakeup.clear()  # before what was handed over is taken: a later hand-over wakes it again
    if reader is not None:
        if readable or timeout == 0:
            reader.dispatch_ready(connection)  # one read for all the socket holds; every complete frame
    elif readable:
        # py-amqp reads a frame per call (TLS): drain until the socket has nothing complete left.
        while True:
            try:
                connection.drain_events(timeout=0)
            except socket.timeout:
                break
