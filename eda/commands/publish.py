"""What ``eda publish`` does (cli.py has the command): read events from --data or JSON lines, validate
all, publish confirmed.

Every event is validated before anything is sent, so an invalid line publishes nothing of its input.
The input is read once and in bounded memory, whatever its size: each valid event is encoded into a
temporary spool file as it is validated, and only once the whole input proved valid does a second
pass publish from the spool (stdin included, which cannot be read twice).
"""

import json
import re
import tempfile

import click
import orjson

from eda.contracts import registry
from eda.contracts.building import build_event
from eda.contracts.envelope import Event, encode
from eda.errors import ContractError, Unroutable
from eda.producer import Producer

MAX_REPORTED = 20  # invalid lines listed; the rest are counted
MAX_PROBLEM = 300  # characters shown of one line's problem
UTF8_BOM = b"\xef\xbb\xbf"
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str, where: str):
    """JSON text as Python values, or a ContractError. json.loads, which is faster here, unless the text
    escapes a surrogate: orjson then decides, since it refuses a lone one ("\\ud800"), which no UTF-8
    encoder could write back. Nesting deeper than the stack allows is refused, not a crash."""
    try:
        if "\\u" in text and SURROGATE_ESCAPE.search(text):
            return orjson.loads(text)
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ContractError(f"{where}: not JSON we take: nested too deeply") from None
    except ValueError as exc:  # orjson.JSONDecodeError is one too
        raise ContractError(f"{where}: not JSON: {exc}") from None


def _build(event_name, text, where, source, correlation_id) -> Event:
    try:
        if isinstance(text, str) and not text.isascii():
            text.encode("utf-8")  # text from the command line may hold undecodable bytes as surrogates
        return build_event(event_name, parse_json(text, where), source, correlation_id)
    except UnicodeEncodeError:
        raise ContractError(f"{where}: not UTF-8 text") from None
    except RecursionError:
        raise ContractError(f"{where}: nested too deeply") from None
    except ContractError as exc:
        message = str(exc)
        raise ContractError(message if message.startswith(where) else f"{where}: {message}", exc.fields) from None


def _encode(event: Event, where: str) -> bytes:
    try:
        return encode(event)
    except ContractError as exc:
        raise ContractError(f"{where}: {exc}", exc.fields) from None
    except (TypeError, ValueError) as exc:  # e.g. an integer past 64 bits, which JSON allows
        raise ContractError(f"{where}: cannot be encoded: {exc}") from None


def _short(message: str) -> str:
    return message if len(message) <= MAX_PROBLEM else message[:MAX_PROBLEM] + "..."


class Batch:
    """Validated events of one type, encoded into a temporary file: ``len`` and iteration of
    ``(event, body)``, where the event carries the attributes its AMQP properties need."""

    def __init__(self, event_type: str, source: str, correlation_id: str | None):
        self.event_type = event_type
        self.source = source
        self.correlation_id = correlation_id
        self._spool = tempfile.TemporaryFile(prefix="eda-publish-")
        self._count = 0

    def add(self, event: Event, body: bytes) -> None:
        """Keep ``event`` (validated) with its ``body``; orjson's JSON holds no raw newline, a uuid no tab."""
        self._spool.write(b"%s\t%s\n" % (event.id.encode(), body))
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def __iter__(self):
        self._spool.seek(0)
        for record in self._spool:
            event_id, body = record[:-1].split(b"\t", 1)
            event_id = event_id.decode()
            yield Event(type=self.event_type, data={}, source=self.source, id=event_id, time="",
                        correlation_id=self.correlation_id or event_id), body

    def close(self) -> None:
        self._spool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def events_from_input(event_name: str, *, data=None, lines=None, source="eda/cli", correlation_id=None) -> Batch:
    """Validated events of one type from a JSON string or an iterable of JSON lines (bytes or str)."""
    contract = registry.get(event_name)  # an unknown event fails before any input is read
    batch = Batch(contract.type, source, correlation_id)
    try:
        if data is not None:
            event = _build(event_name, data, "--data", source, correlation_id)
            batch.add(event, _encode(event, "--data"))
            return batch
        _validate_lines(event_name, lines, batch, source, correlation_id)
        return batch
    except BaseException:
        batch.close()
        raise


def _validate_lines(event_name, lines, batch, source, correlation_id) -> None:
    problems, invalid = [], 0
    for number, line in enumerate(lines, start=1):
        if number == 1 and isinstance(line, bytes) and line.startswith(UTF8_BOM):
            line = line[len(UTF8_BOM):]
        if not line.strip():
            continue
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:  # not text at all: listing its lines would say nothing more
                raise ContractError(f"line {number} is not UTF-8 text (a binary file?); nothing was published") \
                    from None
        where = f"line {number}"
        try:
            event = _build(event_name, line, where, source, correlation_id)
            body = _encode(event, where)
        except ContractError as exc:
            invalid += 1
            if len(problems) < MAX_REPORTED:
                problems.append(_short(str(exc)))
            continue
        if not invalid:  # once a line failed nothing is published: validate the rest, keep nothing
            batch.add(event, body)
    if invalid:
        more = f"\n(and {invalid - MAX_REPORTED} more invalid lines)" if invalid > MAX_REPORTED else ""
        raise ContractError("nothing was published; invalid events:\n" + "\n".join(problems) + more)
    if not len(batch):
        raise ContractError("nothing to publish: the input holds no events")


def publish_confirmed(settings, events, *, on_confirmed=None, progress=False) -> None:
    """Publish a Batch (or built events) with pipelined confirms; return once the broker confirmed every one."""
    items = events if isinstance(events, Batch) else [(event, None) for event in events]
    with Producer(settings, mandatory=True) as producer:
        try:
            if not progress:
                producer.publish_encoded(items, on_confirmed=on_confirmed)
                return
            with click.progressbar(length=len(items), label="publishing", file=click.get_text_stream("stderr")) as bar:
                def confirmed(event):
                    bar.update(1)
                    if on_confirmed:
                        on_confirmed(event)
                producer.publish_encoded(items, on_confirmed=confirmed)
        except Unroutable as exc:
            raise Unroutable(f"{exc}; {_no_queue(next(iter(items))[0].type)}") from None


def _no_queue(event_type: str) -> str:
    """What to do about an event no queue took: start the worker that takes it; a reply is never consumed from
    the events exchange."""
    requests = registry.requests_replied_by(event_type)
    if requests:
        return (f"{event_type} is the reply to {' and '.join(c.type for c in requests)}: the worker that answers "
                f"a request sends it to the requester alone (`eda request {requests[0].name} ...` asks for one)")
    from eda import discovery

    consumers = discovery.consumers_of(event_type)
    if not consumers:  # declaring the topology would bind no queue to it either
        return f"no worker of the app handles {event_type} (`eda events` shows what each worker takes)"
    return (f"start {' or '.join(f'`eda worker {name}`' for name in consumers)}, or run `eda topology declare` "
            "so that its queue keeps the events until it starts")
