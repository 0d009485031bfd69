"""Writing scheduled events to the outbox outside an application's transaction: ``Producer.publish(...,
at=/delay=)`` and a handler's ``ctx.publish(..., delay=)`` (written by the worker before it acks the
handled event). Each thread has its own connection to the outbox's database, opened on first use; a
connection that broke is opened again once before the write fails.
"""

import sqlite3
import threading
from datetime import datetime, timedelta

from eda import tracing
from eda.contracts.envelope import Event, encode
from eda.errors import StoreUnavailable
from eda.due import due_time, rfc3339
from eda.outbox.outbox import Outbox
from eda.outbox.tables import sqlite_transaction
from eda.contracts.building import python_event


class Scheduling:
    """The outbox of ``settings`` (EDA_DATABASE_URL's PostgreSQL, else SQLite under EDA_STATE_DIR) and
    a connection per thread to write scheduled events in."""

    def __init__(self, settings, source: str):
        self.outbox = Outbox(settings, source=source)  # creates (or upgrades) the table; ConfigError if it cannot
        self._local = threading.local()
        self._opened = []
        self._lock = threading.Lock()
        if self.outbox.engine == "postgresql":
            import psycopg

            self._lost = (psycopg.OperationalError, psycopg.InterfaceError)
        else:
            self._lost = (sqlite3.OperationalError,)

    def schedule(self, event_name, data: dict, correlation_id: str | None, at: datetime | None,
                 delay: timedelta | float | None) -> Event:
        """Validate and write one event due ``at`` or after ``delay`` (``Producer.publish``'s way in)."""
        due = due_time(at, delay)
        built, wire = python_event(event_name, data, self.outbox.source, correlation_id)
        built.time = rfc3339(due)
        tracing.stamp(built, "eda-producer")  # the relay's publish joins the caller's trace
        self.write([(built, encode(built, wire), due)])
        return built

    def write(self, scheduled) -> None:
        """Write ``(event, body, due)`` triples in one transaction; those whose id is there already (a
        redelivered event's reactions) are left as they are. A lost database is StoreUnavailable."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                with sqlite_transaction(conn) if isinstance(conn, sqlite3.Connection) else conn.transaction():
                    for event, body, due in scheduled:
                        self.outbox.write(conn, event, body, due)
                return
            except self._lost as exc:
                self._drop(conn)
                if attempt == 2:
                    reason = " ".join(str(exc).split())[:200] or type(exc).__name__
                    raise StoreUnavailable(f"cannot write scheduled events to the outbox in {self.outbox.where}: "
                                           f"{reason}") from None

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.outbox.open(autocommit=True)
            with self._lock:
                self._opened.append(conn)
        return conn

    def _drop(self, conn) -> None:
        self._local.conn = None
        with self._lock:
            if conn in self._opened:
                self._opened.remove(conn)
        _close(conn)

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            _close(conn)


def _close(conn) -> None:
    try:
        conn.close()
    except Exception:  # already broken
        pass
