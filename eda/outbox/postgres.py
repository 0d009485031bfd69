"""The outbox table in PostgreSQL (``EDA_DATABASE_URL``): ``<namespace>.outbox``, its SQL in one place.

A row's ``position`` is the order rows were added in; ``sent_at`` is NULL until the broker confirmed
its event. A scheduled row has a ``due_at`` (NULL: publish at once) and may be ``cancelled_at`` before
it is sent; one the broker refused is due again later, its first due time kept in ``first_due_at``
(overdue since then: ``eda outbox status`` counts it pending). Times in and out of this class are
Unix seconds (floats); due times are compared with the relay's clock, which also decides when it wakes.
"""

import hashlib
from datetime import datetime, timezone
from urllib.parse import urlsplit

from eda.errors import StoreUnavailable
from eda.outbox.connect import quoted

COLUMNS = "position, event_id, event_type, source, correlation_id, body, due_at"  # due_at: None for at once
LISTED = "event_id, event_type, correlation_id, source, due_at, added_at, sent_at, cancelled_at"
PENDING = "sent_at IS NULL AND cancelled_at IS NULL AND due_at IS NOT NULL"  # the predicate of outbox_due
OVERDUE = f"{PENDING} AND first_due_at IS NOT NULL"  # the predicate of outbox_overdue
CANCEL_LOCK_TIMEOUT = "30s"  # a relay holds a row's lock for one batch's publish (CONFIRM_TIMEOUT at most)


def moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def seconds(value) -> float | None:
    return value.timestamp() if value is not None else None


class PostgresTable:
    """``<namespace>.outbox`` in the database of EDA_DATABASE_URL (the namespace's schema), with a
    statement trigger that NOTIFYs the relays on commit of any transaction that added rows."""

    engine = "postgresql"
    placeholder = "%s"

    def __init__(self, url: str, namespace: str):
        from eda.store import schema_name  # the schema the workers' state of the namespace is in

        self.url = url
        self.schema = schema_name(namespace)
        self.table = f"{quoted(self.schema)}.outbox"
        # pg_notify refuses channel names of 64 bytes or more: a long namespace is hashed.
        channel = f"eda_outbox.{namespace}"
        self.channel = channel if len(channel.encode()) < 64 else \
            "eda_outbox." + hashlib.sha256(namespace.encode()).hexdigest()[:40]
        self.insert_sql = (f"INSERT INTO {self.table} (event_id, event_type, source, correlation_id, body) "
                           f"VALUES (%s, %s, %s, %s, %s)")
        # A scheduled event's id is unique among scheduled rows: a handler's delayed reaction, written
        # again when the handled event is redelivered, or a recurring schedule's tick written by several
        # relays, is one row.
        self.schedule_sql = (f"INSERT INTO {self.table} (event_id, event_type, source, correlation_id, body, due_at) "
                             f"VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) WHERE due_at IS NOT NULL "
                             f"DO NOTHING")

    # The schema.

    def create(self, conn) -> None:
        """Create schema, table, indexes and trigger unless they exist, or add what an outbox of an earlier
        eda lacks (several processes may start at once: an advisory lock makes them take turns; a table
        that is up to date is left as it is, without any lock)."""
        import psycopg

        try:
            self._create(conn)
        except psycopg.errors.UniqueViolation:  # the schema made at the same moment by a worker's store
            self._create(conn)

    def _current(self, conn) -> bool | None:
        """None: no table; False: a table an earlier eda made (without due times, or first due times);
        True: up to date."""
        if conn.execute("SELECT to_regclass(%s)", (self.table,)).fetchone()[0] is None:
            return None
        return self._has(conn, "first_due_at")

    def _has(self, conn, column: str) -> bool:
        return conn.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND "
                            "table_name = 'outbox' AND column_name = %s", (self.schema, column)).fetchone() is not None

    def _create(self, conn) -> None:
        name = f"{self.schema}.outbox"
        with conn.transaction():
            if self._current(conn):
                return
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"eda.outbox {name}",))
            current = self._current(conn)
            if current:
                return
            if current is False:
                self._upgrade(conn)
                return
            schema, function = quoted(self.schema), f"{quoted(self.schema)}.outbox_notify"
            channel = self.channel.replace("'", "''")
            conn.execute(f"""
                CREATE SCHEMA IF NOT EXISTS {schema};
                CREATE TABLE {self.table} (
                    position bigserial PRIMARY KEY,
                    event_id text NOT NULL,
                    event_type text NOT NULL,
                    source text NOT NULL,
                    correlation_id text NOT NULL,
                    body bytea NOT NULL,
                    added_at timestamptz NOT NULL DEFAULT now(),
                    sent_at timestamptz,
                    due_at timestamptz,
                    cancelled_at timestamptz,
                    first_due_at timestamptz
                );
                {self._indexes()}
                CREATE INDEX outbox_sent ON {self.table} (sent_at) WHERE sent_at IS NOT NULL;
                CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS
                    $$ BEGIN PERFORM pg_notify('{channel}', ''); RETURN NULL; END $$;
                CREATE TRIGGER outbox_notify AFTER INSERT ON {self.table}
                    FOR EACH STATEMENT EXECUTE FUNCTION {function}();
            """)

    def _indexes(self) -> str:
        # Rows to publish at once, in the order added; scheduled rows by due time (the relay claims the
        # due ones and sleeps until the next); a scheduled id once; cancelled rows for the pruning; those
        # the broker refused, for eda outbox status.
        return f"""
            CREATE INDEX outbox_pending ON {self.table} (position) WHERE sent_at IS NULL AND due_at IS NULL;
            CREATE INDEX outbox_due ON {self.table} (due_at, position) WHERE {PENDING};
            CREATE UNIQUE INDEX outbox_scheduled ON {self.table} (event_id) WHERE due_at IS NOT NULL;
            CREATE INDEX outbox_cancelled ON {self.table} (due_at) WHERE cancelled_at IS NOT NULL;
            {self._overdue_index()}
        """

    def _overdue_index(self) -> str:
        return f"CREATE INDEX outbox_overdue ON {self.table} (first_due_at) WHERE {OVERDUE};"

    def _upgrade(self, conn) -> None:
        """An outbox of an earlier eda: add the columns it lacks (no rewrite: nullable, no default); one
        from before scheduled events also gets rows to publish at once indexed apart from scheduled ones."""
        if self._has(conn, "due_at"):
            conn.execute(f"ALTER TABLE {self.table} ADD COLUMN first_due_at timestamptz; {self._overdue_index()}")
            return
        conn.execute(f"""
            ALTER TABLE {self.table} ADD COLUMN due_at timestamptz, ADD COLUMN cancelled_at timestamptz,
                ADD COLUMN first_due_at timestamptz;
            DROP INDEX {quoted(self.schema)}.outbox_pending;
            {self._indexes()}
        """)

    # The application's side.

    def add(self, conn, row: tuple, due: float | None) -> bool:
        """Insert ``(event_id, type, source, correlation_id, body)`` in ``conn``'s transaction; a scheduled
        row whose id is there already is not written again (False)."""
        if due is None:
            conn.execute(self.insert_sql, row)
            return True
        return conn.execute(self.schedule_sql, (*row, moment(due))).rowcount == 1

    # The relay's side.

    def claim(self, conn, limit: int, now: float) -> list[tuple]:
        """The rows to publish no other relay holds, locked until the caller's transaction ends: scheduled
        rows due by ``now`` in due order (they are late already), then rows added for at once."""
        rows = conn.execute(f"SELECT {COLUMNS} FROM {self.table} WHERE {PENDING} AND due_at <= %s "
                            f"ORDER BY due_at, position LIMIT %s FOR UPDATE SKIP LOCKED",
                            (moment(now), limit)).fetchall()
        if len(rows) < limit:
            rows += conn.execute(f"SELECT {COLUMNS} FROM {self.table} WHERE sent_at IS NULL AND due_at IS NULL "
                                 f"ORDER BY position LIMIT %s FOR UPDATE SKIP LOCKED", (limit - len(rows),)).fetchall()
        return rows

    def postpone(self, conn, positions, until: float) -> None:
        """Make scheduled rows the broker did not take due again at ``until`` (the others go on meanwhile),
        keeping the time each was first due."""
        conn.execute(f"UPDATE {self.table} SET first_due_at = coalesce(first_due_at, due_at), due_at = %s "
                     f"WHERE position = ANY(%s) AND due_at IS NOT NULL", (moment(until), list(positions)))

    def next_due(self, conn) -> float | None:
        """The due time of the earliest scheduled row not yet published, or None."""
        return seconds(conn.execute(f"SELECT min(due_at) FROM {self.table} WHERE {PENDING}").fetchone()[0])

    def mark_sent(self, conn, positions) -> None:
        conn.execute(f"UPDATE {self.table} SET sent_at = now() WHERE position = ANY(%s)", (list(positions),))

    def prune(self, conn, retention: float) -> int:
        """Delete rows sent more than ``retention`` seconds ago, and cancelled ones that fell due as long
        ago (kept until then, so that a recurring schedule does not write a cancelled tick again)."""
        sent = conn.execute(f"DELETE FROM {self.table} WHERE sent_at < now() - make_interval(secs => %s)",
                            (retention,)).rowcount
        return sent + conn.execute(f"DELETE FROM {self.table} WHERE cancelled_at IS NOT NULL AND "
                                   f"due_at < now() - make_interval(secs => %s)", (retention,)).rowcount

    def pending(self, conn, now: float) -> tuple[int, float | None]:
        """(rows to publish by ``now``, seconds since the earliest of them was due, or None); overdue
        rows (refused by the broker, due again later) are pending since their first due time."""
        count, oldest = conn.execute(f"SELECT count(*), min(added_at) FROM {self.table} "
                                     f"WHERE sent_at IS NULL AND due_at IS NULL").fetchone()
        due, earliest = conn.execute(f"SELECT count(*), min(due_at) FROM {self.table} WHERE {PENDING} "
                                     f"AND due_at <= %s", (moment(now),)).fetchone()
        refused, first = conn.execute(f"SELECT count(*) FILTER (WHERE due_at > %s), min(first_due_at) "
                                      f"FROM {self.table} WHERE {OVERDUE}", (moment(now),)).fetchone()
        times = [seconds(t) for t in (oldest, earliest, first) if t is not None]
        return count + due + refused, (max(0.0, now - min(times)) if times else None)

    def overdue(self, conn, now: float) -> tuple[int, float | None]:
        """(scheduled rows the broker refused, not published yet; seconds since the earliest was first due)."""
        count, first = conn.execute(f"SELECT count(*), min(first_due_at) FROM {self.table} WHERE {OVERDUE}"
                                    ).fetchone()
        return count, (max(0.0, now - seconds(first)) if first is not None else None)

    def later(self, conn, now: float) -> int:
        """Scheduled rows not due yet (those due again after a refusal are overdue, not later)."""
        return conn.execute(f"SELECT count(*) FROM {self.table} WHERE {PENDING} AND due_at > %s "
                            f"AND first_due_at IS NULL", (moment(now),)).fetchone()[0]

    # Scheduled events: list, look up, cancel.

    def scheduled(self, conn, limit: int | None) -> list[tuple]:
        """Scheduled rows not published nor cancelled, earliest due first (``LISTED`` columns, times as seconds)."""
        rows = conn.execute(f"SELECT {LISTED} FROM {self.table} WHERE {PENDING} ORDER BY due_at, position "
                            f"LIMIT %s", (limit,)).fetchall()
        return [_listed(row) for row in rows]

    def find(self, conn, event_id: str) -> tuple | None:
        row = conn.execute(f"SELECT {LISTED} FROM {self.table} WHERE event_id = %s AND due_at IS NOT NULL",
                           (event_id,)).fetchone()
        return _listed(row) if row else None

    def cancel(self, conn, event_id: str) -> bool:
        """Cancel a scheduled row not yet published (True). A relay publishing it at this moment holds its
        row lock: the UPDATE waits for that transaction and, once the row is marked sent, matches nothing.
        A lock held past CANCEL_LOCK_TIMEOUT is StoreUnavailable (nothing cancelled: try again)."""
        import psycopg

        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = '{CANCEL_LOCK_TIMEOUT}'")
                return conn.execute(f"UPDATE {self.table} SET cancelled_at = now() WHERE event_id = %s AND "
                                    f"{PENDING}", (event_id,)).rowcount == 1
        except psycopg.errors.LockNotAvailable:
            raise StoreUnavailable(f"cannot cancel {event_id} now: its row stayed locked for "
                                   f"{CANCEL_LOCK_TIMEOUT} (a relay publishing it?); nothing was cancelled, "
                                   f"try again") from None

    def where(self) -> str:
        parts = urlsplit(self.url)
        return f"PostgreSQL {parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or '/'}, " \
               f"table {self.schema}.outbox"


def _listed(row) -> tuple:
    return (*row[:4], *(seconds(t) for t in row[4:]))
