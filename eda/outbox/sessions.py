"""A relay's hold on the outbox: claim a batch, mark what the broker confirmed, wait for new rows.

PostgreSQL: the batch is claimed with ``FOR UPDATE SKIP LOCKED`` in a transaction that lasts until its
rows are marked sent, so several relays share the outbox and none takes rows another holds; a relay
that dies before its commit leaves its rows pending (published again later: a duplicate, never a
loss). A second connection LISTENs for the NOTIFY the table's trigger sends on commit.

SQLite has no row locks: one relay at a time holds the outbox, through an exclusive ``flock`` on a
file beside it (released by the kernel when the process dies); it polls for new rows. It holds a
second lock file, the batch lock, from claiming a batch until its marks are committed, which a cancel
of a scheduled event takes too.

Scheduled rows are claimed once due by the relay's clock (``now``), earliest first; ``next_due`` tells
the relay how long it may sleep.
"""

import fcntl
import select
import sqlite3
import time
from contextlib import contextmanager

from eda.outbox.tables import connect_postgres, connect_sqlite, quoted, sqlite_transaction


class PostgresSession:
    def __init__(self, outbox):
        import psycopg

        # What ends the session (the relay opens a new one): the database gone, or its ending a batch's
        # transaction idle past idle_in_transaction_session_timeout while the broker's confirms came slowly.
        self.errors = (psycopg.OperationalError, psycopg.InterfaceError,
                       psycopg.errors.IdleInTransactionSessionTimeout)
        self.table = outbox.table
        self.conn = connect_postgres(self.table.url, application_name="eda-outbox-relay", relay=True)
        self.conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED  # SKIP LOCKED re-checks rows committed meanwhile
        self.listener = connect_postgres(self.table.url, autocommit=True, application_name="eda-outbox-relay",
                                         relay=True)
        self.listener.execute(f"LISTEN {quoted(self.table.channel)}")

    def acquire(self) -> bool:
        return True  # rows are shared row by row

    @contextmanager
    def claimed(self, limit: int, now: float):
        """``(rows, mark)`` in one transaction: ``mark(positions)`` records them sent, committed on exit."""
        with self.conn.transaction():
            rows = self.table.claim(self.conn, limit, now)
            yield rows, lambda positions: self.table.mark_sent(self.conn, positions)

    def next_due(self) -> float | None:
        with self.conn.transaction():
            return self.table.next_due(self.conn)

    def postpone(self, positions, until: float) -> None:
        """Inside ``claimed``: those claimed scheduled rows are due again at ``until``, committed with the marks."""
        self.table.postpone(self.conn, positions, until)

    def schedule(self, scheduled) -> None:
        """Write ``(event, body, due)`` scheduled rows in one transaction (those there already are kept)."""
        with self.conn.transaction():
            for event, body, due in scheduled:
                self.table.add(self.conn, row_of(event, body), due)

    def wait(self, timeout: float, wake_fd: int) -> None:
        """Return on a NOTIFY of new rows (those queued already included), once ``wake_fd`` is readable
        (the relay's stop), or after ``timeout``."""
        if self._take_notifies():
            return
        socket = self.listener.fileno()
        ready, _, _ = select.select([socket, wake_fd], [], [], max(0.0, timeout))
        if socket in ready:
            self._take_notifies()

    def _take_notifies(self) -> bool:
        """Take the NOTIFYs received (without waiting): whether there were any."""
        return sum(1 for _ in self.listener.notifies(timeout=0)) > 0

    def pending(self) -> tuple[int, float | None]:
        with self.conn.transaction():
            return self.table.pending(self.conn, time.time())

    def prune(self, retention: float) -> int:
        with self.conn.transaction():
            return self.table.prune(self.conn, retention)

    def close(self) -> None:
        for conn in (self.conn, self.listener):
            try:
                conn.close()
            except Exception:  # already broken
                pass


class SqliteSession:
    errors = (sqlite3.OperationalError,)

    def __init__(self, outbox, poll: float):
        self.table = outbox.table
        self.poll = poll
        self.conn = connect_sqlite(self.table.path)
        self._lock = open(self.table.path.with_name(self.table.path.name + ".relay-lock"), "a")
        self._held = False

    def acquire(self) -> bool:
        """Hold the outbox (True), or False while another relay holds it."""
        if not self._held:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._held = True
            except BlockingIOError:
                return False
        return True

    @contextmanager
    def claimed(self, limit: int, now: float):
        def mark(positions):
            with sqlite_transaction(self.conn):
                self.table.mark_sent(self.conn, positions)

        with self.table.batch_lock():
            yield self.table.claim(self.conn, limit, now), mark

    def next_due(self) -> float | None:
        return self.table.next_due(self.conn)

    def postpone(self, positions, until: float) -> None:
        with sqlite_transaction(self.conn):
            self.table.postpone(self.conn, positions, until)

    def schedule(self, scheduled) -> None:
        with sqlite_transaction(self.conn):
            for event, body, due in scheduled:
                self.table.add(self.conn, row_of(event, body), due)

    def wait(self, timeout: float, wake_fd: int) -> None:
        """Return after ``timeout`` (the poll interval at most), or once ``wake_fd`` is readable."""
        select.select([wake_fd], [], [], max(0.0, min(timeout, self.poll)))

    def pending(self) -> tuple[int, float | None]:
        return self.table.pending(self.conn, time.time())

    def prune(self, retention: float) -> int:
        return self.table.prune(self.conn, retention)

    def close(self) -> None:
        self.conn.close()
        self._lock.close()


def row_of(event, body: bytes) -> tuple:
    return event.id, event.type, event.source, event.correlation_id, body


def open_session(outbox, poll: float):
    return PostgresSession(outbox) if outbox.engine == "postgresql" else SqliteSession(outbox, poll)
