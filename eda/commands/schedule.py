"""``eda schedule``: events waiting in the outbox for their due time: list them, add one, cancel one.

``eda outbox relay`` publishes them when due; recurring schedules are declared in the app's code
(``eda.schedule(...)``) and listed by ``eda schedule recurring``.
"""

import json
import time
from contextlib import closing
from datetime import datetime

import click

from eda.cli_support import (OUTBOX, Duration, app_option, check_event_options, columns, complete_events,
                             settings_options)
from eda.errors import ConfigError, NotScheduled

WHERE = ("namespace", "log_format", "log_level", *OUTBOX)  # where the outbox is; no broker needed


@click.group()
def schedule():
    """Scheduled events: waiting in the outbox until `eda outbox relay` publishes them when due."""


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print each waiting event as one line of JSON.")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many (the earliest due).")
@settings_options(*WHERE)
def schedule_list(as_json, limit, settings):
    """Scheduled events not published nor cancelled yet, the earliest due first: id, type, due time (UTC),
    correlation id and source."""
    from eda.outbox import Outbox

    outbox = Outbox(settings, create=False)
    waiting = outbox.scheduled(limit)
    if as_json:
        for event in waiting:
            click.echo(json.dumps(event.as_json()))
        return
    if not waiting:
        click.echo(f"no scheduled events waiting in {outbox.where}")
        return
    now = time.time()
    rows = [("ID", "TYPE", "DUE (UTC)", "IN", "CORRELATION ID", "SOURCE")] + [
        (e.id, e.type, e.as_json()["due"], _until(e.due - now), e.correlation_id, e.source) for e in waiting]
    for line in columns(rows):
        click.echo(line)


@schedule.command("recurring")
@click.option("--json", "as_json", is_flag=True, help="Print each schedule as one line of JSON.")
@settings_options("log_format", "log_level")
@app_option
def schedule_recurring(as_json, settings):
    """The app's recurring schedules (declared with eda.schedule in its code): name, cron expression,
    time zone, event and next tick. `eda outbox relay` (with the same --app) publishes their ticks."""
    from eda.outbox import recurring
    from eda.due import rfc3339

    now = time.time()
    schedules = recurring.of_app()
    if as_json:
        for s in schedules:
            click.echo(json.dumps({"name": s.name, "cron": s.cron, "timezone": s.timezone, "event": s.event,
                                   "next": rfc3339(s.next_after(now)), "explained": s.explain()}))
        return
    if not schedules:
        click.echo("no recurring schedules declared by the app (eda.schedule in a module --app names)")
        return
    rows = [("NAME", "CRON", "TIME ZONE", "EVENT", "NEXT (UTC)", "WHEN")] + [
        (s.name, s.cron, s.timezone, s.event, rfc3339(s.next_after(now)), s.explain()) for s in schedules]
    for line in columns(rows):
        click.echo(line)


@schedule.command("cancel")
@click.argument("event_id")
@settings_options(*WHERE)
def schedule_cancel(event_id, settings):
    """Cancel the scheduled event EVENT_ID: it will never be published. Exits 1 when it is not waiting
    (published or cancelled already, or unknown). A relay publishing it at this very moment holds its
    row: the cancel waits for it, and then says it was published."""
    from eda.outbox import Outbox
    from eda.due import rfc3339

    outbox = Outbox(settings, create=False)
    cancelled = outbox.cancel(event_id)
    found = outbox.find(event_id)
    if cancelled:
        # found is None where a relay's pruning took the cancelled row meanwhile
        what = f" ({found.type}, due {rfc3339(found.due)})" if found is not None else ""
        click.echo(f"cancelled {event_id}{what}: it will not be published")
        return
    if found is None:
        raise NotScheduled(f"no scheduled event has id {event_id!r} in {outbox.where} (a published one is "
                           f"deleted after the relay's --retention)")
    if found.state == "cancelled":
        raise NotScheduled(f"{event_id} was cancelled already, at {rfc3339(found.cancelled)}")
    raise NotScheduled(f"{event_id} was published already, at {rfc3339(found.sent)}: too late to cancel it")


@schedule.command("add")
@click.argument("event", shell_complete=complete_events)
@click.option("--data", required=True, help="The event's data as a JSON object (as `eda publish --data`).")
@click.option("--at", "at", metavar="TIME", help="When it is due: ISO 8601 with its offset, "
                                                  "e.g. 2030-01-02T09:00:00+01:00 or ...T08:00:00Z.")
@click.option("--delay", type=Duration(), help="When it is due, from now: 90s, 15m, 2h.")
@click.option("--correlation-id", help="Correlation id of the event (default: its own id).")
@click.option("--source", default="eda/cli", show_default=True, help="CloudEvents source attribute.")
@settings_options(*WHERE)
@app_option
def schedule_add(event, data, at, delay, correlation_id, source, settings):
    """Validate EVENT (e.g. reminder-due) and write it to the outbox, due --at a time or after --delay;
    print its id (what `eda schedule cancel` takes)."""
    from eda.contracts.building import build_event
    from eda.contracts.envelope import encode
    from eda.outbox import Outbox
    from eda.due import due_time, rfc3339
    from eda.commands.publish import parse_json

    if (at is None) == (delay is None):
        raise ConfigError("give the due time with exactly one of --at TIME or --delay DURATION")
    check_event_options(correlation_id, source)
    due = due_time(at=_aware(at), delay=delay)
    built = build_event(event, parse_json(data, "--data"), source, correlation_id)
    built.time = rfc3339(due)
    outbox = Outbox(settings, source=source)
    with closing(outbox.open(autocommit=True)) as conn:
        outbox.write(conn, built, encode(built), due)
    click.echo(built.id)


def _aware(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--at {text!r}: not an ISO 8601 time like 2030-01-02T09:00:00+01:00") from None
    if at.tzinfo is None:
        raise ConfigError(f"--at {text}: give its offset too, e.g. {text}Z (UTC) or {text}+01:00")
    return at


def _until(seconds: float) -> str:
    """How long until a due time, in the largest unit it reaches once rounded (59.97 minutes is 1.0h, not 60.0m)."""
    if seconds <= 0:
        return "due"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if round(seconds / size, 1) >= 1:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"
