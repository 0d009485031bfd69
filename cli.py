"""The ``eda`` command line: run workers, publish and watch events, declare the topology."""

import json
import signal
import sys

import click

from eda import tracing
from eda.cli_support import (COMMON, OUTBOX, WORKER, Duration, Group, WorkerCommand, app_option, check_event_options,
                             columns, complete_events, complete_workers, own_options, settings_options,
                             stdout_lines)
from eda.commands.dlq import dlq
from eda.commands.request import request
from eda.commands.saga import saga
from eda.commands.schedule import schedule
from eda.commands.topology import topology
from eda.errors import ConfigError

@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="eda")
@click.option("--app", envvar="EDA_APP", show_envvar=True, metavar="MODULE[,MODULE...]",
              help="Modules to import first (the current directory first on the path): a project's contracts "
                   "and workers, found without installing it. Every command that knows events or workers "
                   "takes it too.")
def main(app):
    """eda: event-driven workers on RabbitMQ.

    Every setting is an option and an EDA_* environment variable; pass the broker URL through
    EDA_BROKER_URL or --broker-url-file so that `ps` never shows its password. Workers and contracts
    come from --app (EDA_APP) and from installed packages' eda.workers and eda.contracts entry points.
    """
    from eda import discovery

    discovery.use_app(app)


@main.command(cls=WorkerCommand, short_help="Run named workers until stopped.")
@click.argument("names", nargs=-1, shell_complete=complete_workers)
@settings_options(*COMMON, *WORKER)
@app_option
def worker(names, settings, **own):
    """Run the named workers until SIGTERM, SIGINT or SIGHUP. The settings a worker declares itself are
    options too: `eda worker NAME --help` shows them."""
    from eda import discovery
    from eda.runtime.runner import Runner
    from eda.worker_checks import check as check_workers
    from eda.systemd import SystemdNotify

    settings = settings.with_(worker_options=own_options(own))
    if not names:
        raise ConfigError(f"name at least one worker to run; known workers: {', '.join(discovery.discover())}")
    classes = [discovery.get(name) for name in dict.fromkeys(names)]
    check_workers(classes, settings)  # a worker defined wrongly: one line, exit 2, before any process starts
    if settings.processes > 1:  # a parent of N processes, each this command with --processes 1
        from eda.runtime.processes import Parent

        sys.exit(Parent(settings, click.get_current_context().meta["eda.worker_args"], [c.name for c in classes]).run())
    # eda's own middleware, outermost: tracing (on only where OTEL_TRACES_EXPORTER asks), systemd
    # notification (where NOTIFY_SOCKET is set: Type=notify units), metrics (with --metrics-port).
    middleware = tracing.middleware("eda-" + "+".join(cls.name for cls in classes))
    middleware.append(SystemdNotify())
    if settings.metrics_port is not None:
        from eda.metrics import Metrics

        middleware.append(Metrics.serve(settings.metrics_port, classes, addr=settings.metrics_address))
    sys.exit(Runner(classes, settings, middleware=middleware).run())


@main.command(short_help="Validate and publish events, confirmed.")
@click.argument("event", shell_complete=complete_events)
@click.option("--data", help="The event's data as a JSON object.")
@click.option("--file", "file", type=click.File("rb"), help="JSON lines of data, one event each ('-' for stdin).")
@click.option("--correlation-id", help="Correlation id of the events (default: each event's own id).")
@click.option("--source", default="eda/cli", show_default=True, help="CloudEvents source attribute.")
@settings_options(*COMMON, "middleware")
@app_option
def publish(event, data, file, correlation_id, source, settings):
    """Validate and publish EVENT (e.g. order-placed); print each id once the broker confirmed it.
    Every event is validated before the first is published: an invalid one publishes nothing."""
    from eda.commands.publish import events_from_input, publish_confirmed

    tracing.setup("eda-publish")
    check_event_options(correlation_id, source)
    if (data is None) == (file is None):
        raise ConfigError("give the event's data with exactly one of --data JSON or --file PATH")
    with events_from_input(event, data=data, lines=file, source=source, correlation_id=correlation_id) as events:
        echo = stdout_lines()
        publish_confirmed(settings, events, on_confirmed=lambda e: echo(e.id),
                          progress=file is not None and sys.stderr.isatty())


@main.command()
@app_option
def events():
    """List the event contracts: name, routing key, fields (* required), the partition key, a request's
    reply and consumers."""
    from eda import discovery
    from eda.contracts.registry import all_contracts
    from eda.publishing.partitioning import wire_key

    rows = [("EVENT", "ROUTING KEY", "CONSUMED BY", "FIELDS")]
    for c in all_contracts():
        fields = ", ".join(f"{name}{'*' if required else ''}" for name, required in c.fields)
        fields += f"; key {wire_key(c)}" if c.key else ""  # the eda-partition-key header's value
        fields += f"; reply {_reply_type(c)}" if c.reply else ""  # a request: the type of its reply
        rows.append((c.name, c.type, ",".join(discovery.consumers_of(c.type)) or "-", fields))
    for line in columns(rows):
        click.echo(line)


def _reply_type(contract) -> str:
    """The type of a request's reply; the name it gives, marked, where no contract has it."""
    from eda.errors import EdaError

    try:
        return contract.reply_contract().type
    except EdaError:
        return f"{contract.reply} (no such contract)"


@main.command(short_help="Queues, their depths and consumers; non-zero if unhealthy.")
@click.argument("names", nargs=-1, shell_complete=complete_workers)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: healthy, problems, queues.")
@settings_options(*COMMON, "retry_delays", "partitions", "state_dir", "database_url", "database_url_file")
@app_option
def status(names, as_json, settings):
    """Every worker's queue, retry queues and DLQ (or those of the named workers) with their message
    and consumer counts; an ordered worker's partitions, each with whether it has its active consumer.
    Exits 1 when a DLQ holds events, a work queue has no consumer or a partition no active one."""
    from eda import status as st
    from eda.connection import open_connection
    from eda.topology import Topology
    from eda import discovery

    workers = [discovery.get(n).name for n in dict.fromkeys(names)] or list(discovery.discover())
    ordered = {w for w in workers if discovery.get(w).ordered_by}
    conn = open_connection(settings)
    try:
        rows = st.queue_status(conn, Topology.from_settings(settings), workers, ordered=ordered)
    finally:
        conn.release()
    from eda.store import describe

    state = describe(settings)  # where the state lives (no password); the database is not contacted
    click.echo(json.dumps(st.as_json(rows, state), indent=2) if as_json
               else st.as_table(rows) + "\n\n" + st.state_line(state))
    found = st.problems(rows)
    if found:
        click.echo(f"unhealthy: {'; '.join(found)}", err=True)
        sys.exit(1)


@main.group()
def outbox():
    """The transactional outbox: events applications wrote in their own database transactions."""


@outbox.command("relay")
@click.option("--batch", type=click.IntRange(1, 10000), default=500, show_default=True, envvar="EDA_OUTBOX_BATCH",
              show_envvar=True, help="Rows published (with pipelined confirms) and marked sent per transaction.")
@click.option("--retention", type=Duration(), default="1h", show_default=True, envvar="EDA_OUTBOX_RETENTION",
              show_envvar=True, help="How long sent rows are kept before they are deleted.")
@settings_options(*COMMON, *OUTBOX, "metrics_port", "metrics_address", "middleware")
@app_option
def outbox_relay(batch, retention, settings):
    """Publish committed outbox rows in the order they were added, confirmed and mandatory, and mark them
    sent; runs until SIGTERM, SIGINT or SIGHUP. Several relays may run at once on PostgreSQL."""
    from eda.outbox.relay import Relay

    tracing.setup("eda-outbox-relay")  # a publish span per row, in the trace eda.stamp wrote into it
    sys.exit(Relay(settings, batch=batch, retention=retention).run())


@outbox.command("status")
@click.option("--max-age", type=Duration(), default="5m", show_default=True,
              help="Exit 1 when the oldest pending row is older than this.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@settings_options("namespace", "log_format", "log_level", *OUTBOX)
def outbox_status(max_age, as_json, settings):
    """Rows not yet published and the oldest one's age; exits 1 when it is older than --max-age."""
    from eda.outbox.status import check

    text, problem = check(settings, max_age, as_json)
    click.echo(text)
    if problem:
        click.echo(f"unhealthy: {problem}", err=True)
        sys.exit(1)


@main.group()
def contracts():
    """The event contracts as documents: JSON Schema and AsyncAPI."""


@contracts.command("show")
@click.argument("event", shell_complete=complete_events)
@app_option
def contracts_show(event):
    """The JSON Schema of EVENT's CloudEvent: the envelope with the schema of its data inside."""
    from eda.contracts.export import event_schema
    from eda.contracts.registry import get

    click.echo(json.dumps(event_schema(get(event)), indent=2))


@contracts.command("check")
@click.option("--against", "baseline", required=True, metavar="FILE",
              help="A document `eda contracts export --format jsonschema` wrote earlier (kept in the repository).")
@app_option
def contracts_check(baseline):
    """Compare today's contracts with an exported baseline; exit 1 on a breaking change (a field removed,
    newly required or of another type in place, a version that can no longer be read, an event gone)."""
    from eda.contracts.compatibility import breaking_changes, load_baseline

    found = breaking_changes(load_baseline(baseline))
    for line in found:
        click.echo(f"breaking: {line}")
    if found:
        click.echo(f"error: {len(found)} breaking change{'s' if len(found) != 1 else ''} against {baseline}", err=True)
        sys.exit(1)
    click.echo(f"no breaking change against {baseline}")


@contracts.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonschema", "asyncapi"]), default="jsonschema",
              show_default=True, help="JSON Schema of every event, or an AsyncAPI 3.0 document of the bus.")
@click.option("-o", "--output", type=click.File("w"), default="-", help="Write to this file [default: stdout].")
@settings_options("namespace")
@app_option
def contracts_export(fmt, output, settings):
    """Export every contract as one JSON document (the namespace names the exchange and queues)."""
    from eda.contracts.export import asyncapi_document, jsonschema_document
    from eda import discovery

    if fmt == "jsonschema":
        doc = jsonschema_document()
    else:
        doc = asyncapi_document(settings.namespace, discovery.discover())
    output.write(json.dumps(doc, indent=2) + "\n")


@main.command()
@click.argument("pattern", default="#")
@click.option("--json", "as_json", is_flag=True, help="Print each event as one line of JSON.")
@click.option("--count", type=click.IntRange(min=1), help="Exit after this many events.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Exit after this many seconds.")
@click.option("--correlation-id", help="Follow one flow (e.g. an order): its events as a tree by causation, each "
                                       "with its worker and time, and the dead letters of known workers.")
@settings_options(*COMMON)
@app_option
def tail(pattern, as_json, count, timeout, correlation_id, settings):
    """Show events matching a topic PATTERN (default '#') live, through a temporary queue."""
    from eda import discovery
    from eda.connection import open_connection
    from eda.tail import CausationTree, Tail, describe

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    tree = CausationTree(correlation_id) if correlation_id else None
    conn = open_connection(settings)
    watcher = Tail(conn, settings.namespace, pattern, dead_letters_of=discovery.discover() if tree else ())
    flow = f", the flow of correlation id {correlation_id!r} and its dead letters" if tree else ""
    click.echo(f"tailing {settings.namespace}.events with pattern {pattern!r}{flow} (Ctrl-C to stop)", err=True)
    seen = 0
    try:
        for wire in watcher.events(timeout=timeout, until=lambda: bool(stop)):
            lines = [describe(wire)] if tree is None else tree.lines(wire)  # another flow's event: none
            if not lines:
                continue
            click.echo(json.dumps(wire, separators=(",", ":")) if as_json else "\n".join(lines))
            sys.stdout.flush()
            seen += 1
            if count and seen >= count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        watcher.close()
        conn.release()


for command in (dlq, request, saga, schedule, topology):
    main.add_command(command)

if __name__ == "__main__":
    main()
