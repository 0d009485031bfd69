"""``eda saga``: a saga's instances and their state, as its worker keeps them in its store (PostgreSQL of
``EDA_DATABASE_URL``, else SQLite under ``EDA_STATE_DIR``): ``list`` them, ``show`` one with the events
applied to it."""

import json
from contextlib import contextmanager
from pathlib import Path

import click

from eda.cli_support import OUTBOX, app_option, settings_options
from eda.errors import ConfigError, NotFound

WHERE = ("namespace", "log_format", "log_level", *OUTBOX)  # where the store is; no broker needed
STATE_CHARS = 80  # of an instance's state on a line of `eda saga list`


def complete_sagas(ctx, param, incomplete):
    """Shell completion of the names of the app's sagas."""
    from eda import discovery
    from eda.sagas import Saga

    return [click.shell_completion.CompletionItem(name, help=cls.description)
            for name, cls in discovery.discover().items() if issubclass(cls, Saga) and name.startswith(incomplete)]


@click.group()
def saga():
    """Sagas: each instance of a flow, its state and the events applied to it."""


@saga.command("list")
@click.argument("worker", shell_complete=complete_sagas)
@click.option("--completed", is_flag=True, help="Show the completed instances still kept (--retention) too.")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many (the oldest first).")
@click.option("--json", "as_json", is_flag=True, help="Print each instance as one line of JSON.")
@settings_options(*WHERE)
@app_option
def saga_list(worker, completed, limit, as_json, settings):
    """The live instances of the saga WORKER, oldest first: key, version (events applied), when started and
    last changed (UTC), and the state."""
    with _instances(settings, worker) as instances:
        rows = instances.list(completed=completed, limit=limit) if instances is not None else []
        where = instances.store.location if instances is not None else _sqlite_path(settings, worker)
    rows = [_in_order(worker, row) for row in rows]
    if as_json:
        for row in rows:
            click.echo(json.dumps(_row_json(worker, row)))
        return
    if not rows:
        click.echo(f"no {'' if completed else 'live '}instances of saga {worker} in {where}")
        return
    header = ("KEY", "VERSION", "STARTED (UTC)", "UPDATED (UTC)", *(("COMPLETED (UTC)",) if completed else ()), "STATE")
    table = [header] + [(row.key, str(row.version), _time(row.started_at), _time(row.updated_at),
                         *((_time(row.completed_at) if row.completed else "-",) if completed else ()),
                         _clipped(json.dumps(row.state))) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    for line in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1])


@saga.command("show")
@click.argument("worker", shell_complete=complete_sagas)
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print the instance and its applied events as one JSON object.")
@settings_options(*WHERE)
@app_option
def saga_show(worker, key, as_json, settings):
    """The instance KEY of the saga WORKER (live, or completed and still kept): its state as JSON and the
    events applied to it, in order, with the reactions each made. Exits 1 when there is none."""
    with _instances(settings, worker) as instances:
        row = instances.get(key) if instances is not None else None
        if row is None:
            raise NotFound(f"saga {worker} has no instance {key!r} (live, or completed within its retention) in "
                           f"{instances.store.location if instances is not None else _sqlite_path(settings, worker)}")
        applied = instances.applied(key)
    row = _in_order(worker, row)
    if as_json:
        click.echo(json.dumps({**_row_json(worker, row), "applied": [_applied_json(a) for a in applied]}))
        return
    click.echo(f"saga {worker}, instance {row.key}: "
               + (f"completed at {_time(row.completed_at)}" if row.completed else "live"))
    click.echo(f"version {row.version}, started {_time(row.started_at)}, updated {_time(row.updated_at)}")
    click.echo(json.dumps(row.state, indent=2))
    click.echo(f"events applied ({len(applied)}):")
    for event in applied:
        reactions = ", ".join(_reaction_text(r) for r in _reactions(event.reactions)) or "no reactions"
        click.echo(f"  {_time(event.applied_at)}  {event.event_type}  {event.event_id}  -> {reactions}")


@contextmanager
def _instances(settings, worker: str):
    """The saga's instances (``eda.sagas.Instances``), or None where its SQLite store was never made."""
    from eda import discovery
    from eda.sagas import Instances, Saga

    cls = discovery.get(worker)
    if not issubclass(cls, Saga):
        sagas = sorted(name for name, c in discovery.discover().items() if issubclass(c, Saga))
        raise ConfigError(f"worker {worker!r} is not a saga (sagas: {', '.join(sagas) or 'none'})")
    if not settings.database_url and not _sqlite_path(settings, worker).exists():
        yield None  # never started here: nothing to show, and no file made by looking
        return
    instances = Instances(settings, worker)
    try:
        yield instances
    finally:
        instances.close()


def _in_order(worker: str, row):
    """The row with its state's fields in the order the saga declares them (its first, often a status,
    leads a clipped line); fields it no longer declares last."""
    from dataclasses import replace

    from eda import discovery

    declared = list(discovery.get(worker)._eda_state_fields)
    rank = {name: i for i, name in enumerate(declared)}
    ordered = dict(sorted(row.state.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))
    return replace(row, state=ordered)


def _sqlite_path(settings, worker: str) -> Path:
    return Path(settings.state_dir) / f"{settings.namespace}.{worker}.sqlite3"


def _time(seconds) -> str:
    from eda.due import rfc3339

    return rfc3339(seconds) if seconds is not None else "-"


def _clipped(text: str) -> str:
    return text if len(text) <= STATE_CHARS else text[:STATE_CHARS - 3] + "..."


def _row_json(worker: str, row) -> dict:
    return {"saga": worker, "key": row.key, "state": row.state, "version": row.version,
            "started_at": _time(row.started_at), "updated_at": _time(row.updated_at),
            "completed_at": _time(row.completed_at) if row.completed else None}


def _reactions(recorded: list) -> list[dict]:
    """A record's reactions as ``{"type", "id", "due"}`` (due: None for those published at once)."""
    found = []
    for due, body in recorded:
        try:
            wire = json.loads(body)
        except ValueError:
            wire = {}
        found.append({"type": wire.get("type"), "id": wire.get("id"), "due": _time(due) if due is not None else None})
    return found


def _reaction_text(reaction: dict) -> str:
    return reaction["type"] + (f" (scheduled, due {reaction['due']})" if reaction["due"] else "")


def _applied_json(event) -> dict:
    return {"event_id": event.event_id, "event_type": event.event_type, "applied_at": _time(event.applied_at),
            "reactions": _reactions(event.reactions)}
