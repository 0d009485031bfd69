"""What ``eda publish`` does: read events from --data or JSON lines, validate all, publish confirmed.

Every event is validated before anything is sent, so an invalid line publishes nothing of its file.
"""

import json

import click

from contracts import registry
from contracts.envelope import new_event
from eda.connection import open_connection
from eda.errors import ContractError, Unroutable
from eda.topology import Topology
from producers.publisher import Publisher

MAX_REPORTED = 20


def _load(contract, text: str, where: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ContractError(f"{where}: not JSON: {exc}") from None
    try:
        return contract.load(data, strict=True)
    except ContractError as exc:
        raise ContractError(f"{where}: {exc}", exc.fields) from None


def events_from_input(event_name: str, *, data=None, lines=None, source="eda/cli", correlation_id=None) -> list:
    """Validated events of one type from a JSON string or an iterable of JSON lines."""
    contract = registry.get(event_name)
    attrs = {"correlation_id": correlation_id} if correlation_id else {}
    if data is not None:
        return [new_event(contract.type, _load(contract, data, "--data"), source, **attrs)]
    events, problems = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(new_event(contract.type, _load(contract, line, f"line {number}"), source, **attrs))
        except ContractError as exc:
            problems.append(str(exc))
    if problems:
        more = f"\n(and {len(problems) - MAX_REPORTED} more invalid lines)" if len(problems) > MAX_REPORTED else ""
        raise ContractError("nothing was published; invalid events:\n" + "\n".join(problems[:MAX_REPORTED]) + more)
    if not events:
        raise ContractError("nothing to publish: the input holds no events")
    return events


def publish_confirmed(settings, events, *, on_confirmed=None, progress=False) -> None:
    """Publish ``events`` with pipelined confirms; return once the broker confirmed every one."""
    conn = open_connection(settings)
    try:
        publisher = Publisher(conn)
        topology = Topology(settings.namespace)
        topology.declare_exchanges(publisher.channel)
        if progress:
            with click.progressbar(length=len(events), label="publishing", file=click.get_text_stream("stderr")) as bar:
                def confirmed(event):
                    bar.update(1)
                    if on_confirmed:
                        on_confirmed(event)
                publisher.publish_events(events, topology.events.name, on_confirmed=confirmed)
        else:
            publisher.publish_events(events, topology.events.name, on_confirmed=on_confirmed)
    except Unroutable as exc:
        raise Unroutable(f"{exc}; start a worker that consumes it, or run `eda topology declare`") from None
    finally:
        conn.release()
