"""``eda request EVENT --data JSON``: send a request and print its reply's data (request-reply)."""

import json

import click

from eda import tracing
from eda.cli_support import COMMON, Duration, app_option, check_event_options, complete_events, settings_options
from eda.errors import ConfigError, ContractError


@click.command(short_help="Send a request and print its reply.")
@click.argument("event", shell_complete=complete_events)
@click.option("--data", required=True, help="The request's data as a JSON object (camelCase, as on the wire).")
@click.option("--timeout", type=Duration(), default="5s", show_default=True,
              help="How long to wait for the reply (500ms, 5s, 2m or seconds).")
@click.option("--envelope", is_flag=True, help="Print the whole reply CloudEvent, not only its data.")
@click.option("--correlation-id", help="Correlation id of the request (default: its own id).")
@click.option("--source", default="eda/cli", show_default=True, help="CloudEvents source attribute.")
@settings_options(*COMMON)
@app_option
def request(event, data, timeout, envelope, correlation_id, source, settings):
    """Send EVENT (a request: its contract declares a reply, e.g. quote-requested) and print the reply's
    data as JSON once a worker answered. Exit 5 when no reply came within --timeout, 6 when the worker
    failed the request (dead-lettered it), 4 at once when no queue takes it."""
    from eda.contracts.building import build_event
    from eda.contracts.envelope import to_wire
    from eda.contracts.registry import get
    from eda.commands.publish import parse_json
    from eda.producer import Producer
    from eda.publishing.requests import MAX_TIMEOUT

    tracing.setup("eda-request")
    check_event_options(correlation_id, source)
    if not 0 < timeout <= MAX_TIMEOUT:
        raise ConfigError(f"--timeout: {timeout:g}s is not above 0 and at most 24h")
    get(event).reply_contract()  # not a request: a usage error, before the data is looked at
    try:
        built = build_event(event, parse_json(data, "--data"), source, correlation_id)
    except ContractError as exc:
        message = str(exc)
        raise ContractError(message if message.startswith("--data") else f"--data: {message}", exc.fields) from None
    with Producer(settings, source=source) as producer:
        reply = producer.request_event(built, timeout=timeout)
    click.echo(json.dumps(to_wire(reply) if envelope else reply.contract.dump(reply.data)))
