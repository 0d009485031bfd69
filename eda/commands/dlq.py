"""``eda dlq``: the dead-letter queues of a namespace's workers: list, show, replay and purge."""

import json
import sys

import click

from eda import tracing
from eda.cli_support import COMMON, app_option, complete_workers, settings_options
from eda.errors import ConfigError


@click.group()
def dlq():
    """Dead-letter queues: why events died; replay them once the cause is fixed, or purge them."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per worker.")
@settings_options(*COMMON)
@app_option
def dlq_list(as_json, settings):
    """Every known worker's DLQ with the number of events in it."""
    from eda.dlq import depth_table, open_dead_letters
    from eda import discovery

    with open_dead_letters(settings) as dead:
        rows = dead.depths(discovery.discover())
    for line in ([json.dumps({"worker": w, "queue": q, "depth": d}) for w, q, d in rows] if as_json
                 else depth_table(rows)):
        click.echo(line)


@dlq.command("show")
@click.argument("worker", shell_complete=complete_workers)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Show at most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print each dead event as one line of JSON.")
@settings_options(*COMMON)
@app_option
def dlq_show(worker, limit, as_json, settings):
    """The dead events of WORKER with their reasons; they stay in the DLQ."""
    from eda.dlq import as_json as to_json, count, describe, open_dead_letters
    from eda import discovery

    discovery.get(worker)
    with open_dead_letters(settings) as dead:
        events, depth = dead.show(worker, limit)
    for event in events:
        click.echo(to_json(event) if as_json else describe(event))
    click.echo(f"{len(events)} of {count(depth, 'dead event')} of {worker} shown; they stay in the DLQ", err=True)


@dlq.command("replay")
@click.argument("worker", shell_complete=complete_workers)
@click.option("--limit", type=click.IntRange(min=1), help="Replay at most this many (oldest first).")
@click.option("--id", "event_id", help="Replay only the event with this id.")
@click.option("--dry-run", is_flag=True, help="List what would be replayed; move nothing.")
@settings_options(*COMMON)
@app_option
def dlq_replay(worker, limit, event_id, dry_run, settings):
    """Move dead events back to WORKER's own queue, failure headers removed and attempts reset."""
    from eda.dlq import count, open_dead_letters
    from eda import discovery

    discovery.get(worker)
    # With tracing on (OTEL_TRACES_EXPORTER), a replay is a span in each event's own trace.
    with open_dead_letters(settings, tracing=tracing.setup("eda-dlq")) as dead:
        if dry_run:
            events = dead.preview(worker, limit=limit, event_id=event_id)
            for event in events:
                click.echo(f"{event['id'] or '-'}  {event['type'] or '-'}")
            click.echo(f"would replay {count(len(events))} to worker {worker} (dry run: nothing moved)")
            return
        moved = dead.replay(worker, limit=limit, event_id=event_id, progress=sys.stderr.isatty())
    click.echo(f"replayed {count(moved)} to worker {worker}")


@dlq.command("purge")
@click.argument("worker", shell_complete=complete_workers)
@click.option("--yes", is_flag=True, help="Confirm that the dead events are deleted for good.")
@settings_options(*COMMON)
@app_option
def dlq_purge(worker, yes, settings):
    """Delete every dead event of WORKER for good."""
    from eda.dlq import count, open_dead_letters
    from eda import discovery

    discovery.get(worker)
    if not yes:
        raise ConfigError(f"purge deletes the dead events of {worker} for good; add --yes to confirm")
    with open_dead_letters(settings) as dead:
        click.echo(f"purged {count(dead.purge(worker))} of worker {worker}")
