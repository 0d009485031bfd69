"""What ``eda publish`` does: read events from --data or JSON lines, validate all, publish confirmed.

Every event is validated before anything is sent, so an invalid line publishes nothing of its file.
"""

import json

import click

from eda.contracts import registry
from eda.errors import ContractError, Unroutable
from eda.publishing.producer import Producer, build_event

MAX_REPORTED = 20


def _parse(text: str, where: str):
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ContractError(f"{where}: not JSON: {exc}") from None


def _build(event_name, text, where, source, correlation_id):
    try:
        return build_event(event_name, _parse(text, where), source, correlation_id)
    except ContractError as exc:
        message = str(exc)
        raise ContractError(message if message.startswith(where) else f"{where}: {message}", exc.fields) from None


def events_from_input(event_name: str, *, data=None, lines=None, source="eda/cli", correlation_id=None) -> list:
    """Validated events of one type from a JSON string or an iterable of JSON lines."""
    registry.get(event_name)  # an unknown event fails before any input is read
    if data is not None:
        return [_build(event_name, data, "--data", source, correlation_id)]
    events, problems = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(_build(event_name, line, f"line {number}", source, correlation_id))
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
    with Producer(settings, mandatory=True) as producer:
        try:
            if not progress:
                producer.publish_events(events, on_confirmed=on_confirmed)
                return
            with click.progressbar(length=len(events), label="publishing", file=click.get_text_stream("stderr")) as bar:
                def confirmed(event):
                    bar.update(1)
                    if on_confirmed:
                        on_confirmed(event)
                producer.publish_events(events, on_confirmed=confirmed)
        except Unroutable as exc:
            raise Unroutable(f"{exc}; start a worker that consumes it, or run `eda topology declare`") from None
