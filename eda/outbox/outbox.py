"""The application's side of the transactional outbox: an event is validated now and written to the
outbox table in the caller's own transaction, so that it is published (by ``eda outbox relay``) if and
only if that transaction commits.

    outbox = Outbox(Settings.from_env(), source="shop/web")
    with psycopg.connect(url) as conn:              # the application's connection and transaction
        conn.execute("INSERT INTO orders ...")
        event = outbox.add(conn, "order-placed", {"order_id": "1", ...})
        outbox.add(conn, "payment-due", {...}, delay=timedelta(minutes=15))   # published when due

A scheduled event (``at=`` or ``delay=``) waits in the outbox until due; ``outbox.cancel(event.id)``
before then means it is never published; ``outbox.scheduled()`` lists those waiting.
"""

import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from eda import tracing
from eda.contracts.envelope import Event, encode
from eda.contracts.registry import EventRef
from eda.errors import ConfigError, NoOutbox
from eda.due import due_time, rfc3339
from eda.outbox.tables import PostgresTable, SqliteTable, connect_postgres, connect_sqlite
from eda.contracts.building import python_event
from eda.settings import Settings

if TYPE_CHECKING:  # imported where used: psycopg only for PostgreSQL
    import psycopg


class Outbox:
    """The outbox of ``settings.namespace``: in EDA_DATABASE_URL's database (PostgreSQL), else in
    ``EDA_STATE_DIR/<namespace>.outbox.sqlite3``. Making one creates the table where it does not exist yet."""

    def __init__(self, settings: Settings, source: str = "eda/outbox", *, create: bool = True):
        self.settings = settings
        self.source = source
        if settings.database_url:
            self.table = PostgresTable(settings.database_url, settings.namespace)
        else:
            self.table = SqliteTable(settings.state_dir, settings.namespace)
            if not create and not self.table.path.exists():  # a reader makes no file where none is
                raise NoOutbox(f"no outbox at {self.table.path}: no application nor `eda outbox relay` has "
                               f"used it (is EDA_STATE_DIR={settings.state_dir} theirs?)")
        conn = self.open(autocommit=True)
        try:
            if not create and self.engine == "postgresql" and \
                    conn.execute("SELECT to_regclass(%s)", (self.table.table,)).fetchone()[0] is None:
                raise NoOutbox(f"no outbox in {self.where}: no application nor `eda outbox relay` has used it "
                               f"(is EDA_DATABASE_URL theirs, and EDA_NAMESPACE={settings.namespace}?)")
            self.table.create(conn)
        except self._errors() as exc:  # say, a user without the CREATE privilege
            reason = " ".join(str(exc).split())[:300]
            raise ConfigError(f"cannot create the outbox table in {self.where}: {reason}") from None
        finally:
            conn.close()

    def _errors(self) -> tuple:
        if self.engine == "sqlite":
            return (sqlite3.Error,)
        import psycopg

        return (psycopg.Error,)

    @property
    def engine(self) -> str:
        """``postgresql`` or ``sqlite``."""
        return self.table.engine

    @property
    def where(self) -> str:
        """The database and table, for messages (never a password)."""
        return self.table.where()

    def connect(self) -> "sqlite3.Connection | psycopg.Connection":
        """A new connection to the outbox's database for the application's own work: psycopg's
        (transaction opened by the first statement) or sqlite3's (``with conn:`` commits)."""
        if self.engine == "postgresql":
            return connect_postgres(self.table.url)
        try:
            return sqlite3.connect(self.table.path, timeout=30.0)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the outbox {self.table.path} (EDA_STATE_DIR): {exc}") from None

    def open(self, autocommit: bool = False):
        """A connection for eda's own use (the relay, ``eda outbox status``); one-line errors."""
        if self.engine == "postgresql":
            return connect_postgres(self.table.url, autocommit=autocommit, application_name="eda-outbox")
        return connect_sqlite(self.table.path)

    def add(self, conn, event: EventRef, data: dict, correlation_id: str | None = None, *,
            at: datetime | None = None, delay: timedelta | float | None = None) -> Event:
        """Validate ``data`` (snake_case keys, Python values, as ``Producer.publish`` takes it) and write
        the CloudEvent to the outbox in ``conn``'s current transaction; return the event, whose id is
        the one consumers will see. Nothing is published until that transaction commits; with ``at``
        (an aware datetime) or ``delay`` (a timedelta or seconds), not before that time either."""
        due = due_time(at, delay)
        built, wire = python_event(event, data, self.source, correlation_id)
        if due is not None:
            built.time = rfc3339(due)  # the event happens when it falls due
        tracing.stamp(built)  # with tracing on, the relay's publish joins the caller's trace
        self.write(conn, built, encode(built, wire), due)
        return built

    def write(self, conn, event: Event, body: bytes, due: float | None = None) -> bool:
        """Write a built event and its body in ``conn``'s transaction (``due``: Unix seconds, or None for
        at once). False when a scheduled event of that id is there already (written once, whatever the
        retries: a redelivered handler's delayed reaction, a recurring schedule's tick)."""
        sqlite = self.engine == "sqlite"
        if sqlite and not isinstance(conn, (sqlite3.Connection, sqlite3.Cursor)):
            raise self._wrong_connection(conn)
        if not sqlite:
            import psycopg

            # An AsyncConnection's execute() is a coroutine: taking one would write nothing, silently.
            if not isinstance(conn, (psycopg.Connection, psycopg.Cursor)):
                raise self._wrong_connection(conn)
        row = (event.id, event.type, event.source, event.correlation_id, body)
        if sqlite:
            try:
                return self.table.add(conn, row, due)
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                raise ConfigError(f"outbox.add: this connection's database has no outbox table: use a connection "
                                  f"to {self.table.path} (EDA_STATE_DIR), or one that ATTACHes it") from None
        try:
            return self.table.add(conn, row, due)
        except psycopg.errors.UndefinedTable:
            raise ConfigError(f"outbox.add: this connection's database has no {self.table.schema}.outbox table: "
                              f"use a connection to the database of EDA_DATABASE_URL") from None

    def _wrong_connection(self, conn) -> ConfigError:
        wanted = "a psycopg 3 connection or cursor (not an async one)" if self.engine == "postgresql" \
            else "a sqlite3 connection"
        return ConfigError(f"outbox.add: the outbox is in {self.where}; pass {wanted} to that database "
                           f"(got {type(conn).__module__}.{type(conn).__name__})")

    def pending(self) -> tuple[int, float | None]:
        """(rows to publish now, seconds since the earliest of them was added or fell due, or None);
        scheduled rows not due yet are not pending, overdue ones are (see ``overdue``)."""
        with self._own() as conn:
            return self.table.pending(conn, time.time())

    def overdue(self) -> tuple[int, float | None]:
        """(scheduled rows the broker refused when they fell due, e.g. no queue takes their type: the
        relay tries them again every 30 s; seconds since the earliest of them fell due, or None)."""
        with self._own() as conn:
            return self.table.overdue(conn, time.time())

    def later(self) -> int:
        """Scheduled rows not due yet (overdue ones are not among them)."""
        with self._own() as conn:
            return self.table.later(conn, time.time())

    # Scheduled events.

    def scheduled(self, limit: int | None = None) -> list["Scheduled"]:
        """The scheduled events waiting (neither published nor cancelled), earliest due first."""
        with self._own() as conn:
            return [Scheduled(*row) for row in self.table.scheduled(conn, limit)]

    def find(self, event_id: str) -> "Scheduled | None":
        """The scheduled event of that id, waiting, published (until the relay's retention deletes it) or
        cancelled; None when there is none."""
        with self._own() as conn:
            row = self.table.find(conn, event_id)
        return Scheduled(*row) if row else None

    def cancel(self, event_id: str) -> bool:
        """Cancel a scheduled event that is still waiting: True, and it will never be published. False when
        it is not waiting: published already (or being published at this moment: the relay's lock on the
        row decides, never both), cancelled already, or unknown (``find`` tells which)."""
        with self._own() as conn:
            return self.table.cancel(conn, event_id)

    def _own(self):
        return closing(self.open(autocommit=True))


@dataclass(frozen=True)
class Scheduled:
    """A scheduled event in the outbox: times as Unix seconds (``due``, ``added``; ``sent`` and
    ``cancelled`` None unless it was)."""

    id: str
    type: str
    correlation_id: str
    source: str
    due: float
    added: float
    sent: float | None
    cancelled: float | None

    @property
    def state(self) -> str:
        return "cancelled" if self.cancelled is not None else "published" if self.sent is not None else "waiting"

    def as_json(self) -> dict:
        return {"id": self.id, "type": self.type, "due": rfc3339(self.due), "correlation_id": self.correlation_id,
                "source": self.source, "added": rfc3339(self.added), "state": self.state}

    @property
    def due_at(self) -> datetime:
        return datetime.fromtimestamp(self.due, timezone.utc)
