"""A saga's instances and the record of the events applied to them, in the worker's store (eda.store):
SQLite under ``EDA_STATE_DIR`` or the namespace's schema of ``EDA_DATABASE_URL``'s PostgreSQL.

Two tables, shared by every saga of the store and keyed by the saga's name, made to be queried:

- ``saga_instances``: one row per instance (``saga``, ``key`` = the correlation value), its ``state``
  (JSON; ``jsonb`` in PostgreSQL, so ``state->>'status'`` works; SQLite: ``json_extract(state,
  '$.status')``), its ``version`` (1 when started, +1 per event applied), ``started_at``,
  ``updated_at`` and ``completed_at`` (Unix seconds; ``completed_at`` NULL while the instance lives).
  A completed instance keeps its final state until the retention passes.
- ``saga_applied``: one row per event applied (``saga``, ``event_id``, ``key``, ``event_type``,
  ``applied_at``) with the reactions it made (their encoded bodies, and due times for scheduled
  ones), published again under the same ids if the event comes back.

Every write is conditional (optimistic concurrency): ``save`` says False when another handling changed
the instance (or applied the event) first, and the caller's transaction is rolled back and retried.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

INSTANCE_COLUMNS = "key, state, version, started_at, updated_at, completed_at"


def schema(postgresql: bool) -> str:
    """The tables (idempotent SQL), ``state`` as ``jsonb`` in PostgreSQL and JSON text in SQLite."""
    state = "JSONB" if postgresql else "TEXT"
    return f"""
CREATE TABLE IF NOT EXISTS saga_instances (saga TEXT NOT NULL, key TEXT NOT NULL, state {state} NOT NULL,
    version BIGINT NOT NULL, started_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
    completed_at DOUBLE PRECISION, PRIMARY KEY (saga, key));
CREATE INDEX IF NOT EXISTS saga_instances_completed ON saga_instances (saga, completed_at);
CREATE TABLE IF NOT EXISTS saga_applied (saga TEXT NOT NULL, event_id TEXT NOT NULL, key TEXT NOT NULL,
    event_type TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL, reactions TEXT NOT NULL,
    PRIMARY KEY (saga, event_id));
CREATE INDEX IF NOT EXISTS saga_applied_key ON saga_applied (saga, key, applied_at);
CREATE INDEX IF NOT EXISTS saga_applied_at ON saga_applied (saga, applied_at);
"""


@dataclass(frozen=True)
class Row:
    """One instance as stored: ``state`` as a dict of its fields' JSON values, times as Unix seconds."""

    key: str
    state: dict
    version: int
    started_at: float
    updated_at: float
    completed_at: float | None

    @property
    def completed(self) -> bool:
        return self.completed_at is not None

    @classmethod
    def of(cls, row) -> "Row":
        key, state, *rest = row
        return cls(key, json.loads(state) if isinstance(state, str) else state, *rest)


@dataclass(frozen=True)
class Applied:
    """An event applied to an instance: its reactions as ``(due or None, body)``."""

    event_id: str
    event_type: str
    applied_at: float
    reactions: list


class Table:
    """The SQL of one saga (``saga`` is its name) over a store's transactions and reads."""

    def __init__(self, saga: str):
        self.saga = saga

    def load(self, tx, key: str, event_id: str) -> tuple[list | None, Row | None]:
        """In one query: the reactions recorded for ``event_id`` if it was applied already (else None),
        and the instance of ``key`` (None where there is none)."""
        found = tx.execute(
            f"SELECT a.reactions, {', '.join('i.' + c for c in INSTANCE_COLUMNS.split(', '))} "
            "FROM (SELECT CAST(? AS TEXT) AS saga, CAST(? AS TEXT) AS key, CAST(? AS TEXT) AS event_id) q "
            "LEFT JOIN saga_applied a ON a.saga = q.saga AND a.event_id = q.event_id "
            "LEFT JOIN saga_instances i ON i.saga = q.saga AND i.key = q.key",
            (self.saga, key, event_id)).fetchone()
        reactions = json.loads(found[0]) if found[0] is not None else None
        return reactions, (Row.of(found[1:]) if found[1] is not None else None)

    def save(self, tx, key: str, state: str, before: Row | None, completed: bool, event, reactions: list) -> bool:
        """Write the instance's new state (``before`` None: start it) and record the event as applied,
        with its reactions; False, and nothing to commit, when another handling got there first."""
        now = time.time()
        done = now if completed else None
        if before is None:
            written = tx.execute("INSERT INTO saga_instances (saga, key, state, version, started_at, updated_at, "
                                 "completed_at) VALUES (?, ?, ?, 1, ?, ?, ?) ON CONFLICT (saga, key) DO NOTHING",
                                 (self.saga, key, state, now, now, done)).rowcount
        else:
            written = tx.execute("UPDATE saga_instances SET state = ?, version = version + 1, updated_at = ?, "
                                 "completed_at = ? WHERE saga = ? AND key = ? AND version = ?",
                                 (state, now, done, self.saga, key, before.version)).rowcount
        if written != 1:
            return False
        return tx.execute("INSERT INTO saga_applied (saga, event_id, key, event_type, applied_at, reactions) "
                          "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (saga, event_id) DO NOTHING",
                          (self.saga, event.id, key, event.type, now, json.dumps(reactions))).rowcount == 1

    def prune(self, tx, retention: float) -> tuple[int, int]:
        """Delete instances completed more than ``retention`` seconds ago, and the record of the events
        applied to an instance no longer kept; return how many of each. A live instance keeps every
        record, however old: a late copy of an event it applied long ago is still recognised."""
        cutoff = time.time() - retention
        instances = tx.execute("DELETE FROM saga_instances WHERE saga = ? AND completed_at < ?",
                               (self.saga, cutoff)).rowcount
        applied = tx.execute("DELETE FROM saga_applied WHERE saga = ? AND applied_at < ? AND NOT EXISTS (SELECT 1 "
                             "FROM saga_instances i WHERE i.saga = saga_applied.saga AND i.key = saga_applied.key)",
                             (self.saga, cutoff)).rowcount
        return instances, applied

    # Reading, for eda saga list/show (outside any write transaction).

    def instances(self, store, *, completed: bool = False, limit: int | None = None) -> list[Row]:
        """The live instances, oldest first (with ``completed``, the completed ones kept too)."""
        where = "" if completed else " AND completed_at IS NULL"
        most = f" LIMIT {int(limit)}" if limit is not None else ""
        rows = store.read(f"SELECT {INSTANCE_COLUMNS} FROM saga_instances WHERE saga = ?{where} "
                          f"ORDER BY started_at, key{most}", (self.saga,))
        return [Row.of(row) for row in rows]

    def instance(self, store, key: str) -> Row | None:
        rows = store.read(f"SELECT {INSTANCE_COLUMNS} FROM saga_instances WHERE saga = ? AND key = ?",
                          (self.saga, key))
        return Row.of(rows[0]) if rows else None

    def applied(self, store, key: str) -> list[Applied]:
        """The events applied to the instance of ``key`` (while their record is kept), in the order applied."""
        rows = store.read("SELECT event_id, event_type, applied_at, reactions FROM saga_applied WHERE saga = ? "
                          "AND key = ? ORDER BY applied_at, event_id", (self.saga, key))
        return [Applied(event_id, event_type, at, json.loads(reactions)) for event_id, event_type, at, reactions
                in rows]


class Instances:
    """A saga's instances as stored, for reading (``eda saga list/show``, tests, monitoring): ``list``,
    ``get`` and ``applied``. Opens the worker's store (``EDA_DATABASE_URL``, else SQLite under
    ``EDA_STATE_DIR``); close it, or use it as a context manager."""

    def __init__(self, settings, saga: str):
        from eda.store import open_store

        # A reader (eda saga list) fails at once where the database does not answer.
        self.store = open_store(settings, saga, schema(bool(settings.database_url)), patience=0)
        self.table = Table(saga)

    def list(self, *, completed: bool = False, limit: int | None = None) -> list[Row]:
        """The live instances, oldest first; ``completed``: the completed ones still kept too."""
        return self.table.instances(self.store, completed=completed, limit=limit)

    def get(self, key: str) -> Row | None:
        """The instance of ``key`` (live or completed and kept), or None."""
        return self.table.instance(self.store, key)

    def applied(self, key: str) -> list[Applied]:
        """The events applied to the instance of ``key``, in order, while their record is kept."""
        return self.table.applied(self.store, key)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Instances":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
