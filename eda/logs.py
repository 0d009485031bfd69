"""Logging setup: python-json-logger lines on stdout, or plain text for people."""

import logging
import os
import re
import sys
import time
from contextvars import ContextVar

import orjson
from pythonjsonlogger.orjson import OrjsonFormatter

SURROGATES = re.compile("[\ud800-\udfff]")
MAX_VALUE = 1000  # characters kept of a logged value (events carry what any publisher wrote), as in DLQ headers
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s%(context)s"
TRACEBACKS = ("exc_info", "stack_info")
CONTEXT_KEYS = ("worker", "event_type", "event_id", "correlation_id", "routing_key", "duration_ms", "error",
                "attempt", "queue", "trace_id")
# Set by eda.tracing when tracing is on: () -> the current span's trace_id and span_id, added to JSON lines.
trace_ids = None
# The handler's context (eda.context.Context) of the event being handled on this thread or task, set once
# per event by eda.worker's dispatch around the middleware and the handler. Both formatters give each
# line written meanwhile the event's fields (EVENT_KEYS), read from it only when a line is written;
# a field the caller set is never replaced.
handling: ContextVar = ContextVar("eda.handling", default=None)
EVENT_KEYS = ("worker", "event_id", "event_type", "correlation_id")
# What every LogRecord has of its own (and what formatters add): the rest is the caller's ``extra=``.
RECORD_KEYS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "context",
                                                                              "taskName"}


def event_fields(ctx) -> dict:
    """The fields of the event a handler's context holds (``worker`` where it has one)."""
    event, worker = ctx.event, ctx.worker
    fields = {"worker": worker.name} if worker is not None else {}
    fields.update(event_id=event.id, event_type=event.type, correlation_id=event.correlation_id)
    return fields


def cut(text: str) -> str:
    """``text`` cut to MAX_VALUE characters, saying how much was left out."""
    return text if len(text) <= MAX_VALUE else f"{text[:MAX_VALUE]}...[{len(text) - MAX_VALUE} more characters]"


def cut_traceback(text: str, keep: int = 2 * MAX_VALUE) -> str:
    """A traceback's head and tail, where it is long (an exception's message may quote a whole event)."""
    if len(text) <= 4 * keep:
        return text
    return f"{text[:keep]}...[{len(text) - 2 * keep} characters]...{text[-keep:]}"


class TextFormatter(logging.Formatter):
    """The message, then ``key=value`` pairs, each cut to MAX_VALUE characters: the event's context
    (CONTEXT_KEYS, in that order; the handled event's where the caller gave none), then the caller's
    other ``extra=`` fields by name."""

    def format(self, record):
        values = {k: v for k, v in record.__dict__.items()
                  if v is not None and isinstance(k, str) and k not in RECORD_KEYS and not k.startswith("_")}
        current = handling.get()
        if current is not None:
            values = {**event_fields(current), **values}
        keys = [k for k in CONTEXT_KEYS if k in values] + sorted(k for k in values if k not in CONTEXT_KEYS)
        pairs = [f"{k}={cut(str(values[k]))}" for k in keys]
        record.context = (" " + " ".join(pairs)) if pairs else ""
        return super().format(record)

    def formatMessage(self, record):
        record.message = cut(record.message)
        return super().formatMessage(record)

    def formatException(self, ei):
        return cut_traceback(super().formatException(ei))


class JsonFormatter(OrjsonFormatter):
    """python-json-logger's orjson formatter, cheap enough for a line per handled event: extra fields
    are picked with one set lookup per record attribute, and the time text is built once a second.
    Text values (the message and every extra field) are cut to MAX_VALUE characters."""

    _second, _second_text = None, ""
    # RFC 3339 in UTC with milliseconds, as eda tail and the events' own time: what log shippers parse
    # without a pattern, and the same instant whatever the host's zone.
    converter = time.gmtime
    default_time_format, default_msec_format = "%Y-%m-%dT%H:%M:%S", "%s.%03dZ"

    def add_fields(self, log_data, record, message_dict):
        rename, skip = self.rename_fields, self._skip_fields
        log_data.update(self.defaults)
        for field in self._required_fields:
            log_data[rename.get(field, field)] = record.__dict__.get(field)
        log_data.update(self.static_fields)
        log_data.update(message_dict)
        for key, value in record.__dict__.items():
            if key not in skip and not (isinstance(key, str) and key.startswith("_")):
                log_data[rename.get(key, key)] = value
        current = handling.get()
        if current is not None:  # a line written while an event is handled (a handler's own)
            for key, value in event_fields(current).items():
                log_data.setdefault(key, value)
        for key, value in log_data.items():
            if type(value) is str and len(value) > MAX_VALUE or isinstance(value, (list, tuple, dict, set)):
                log_data[key] = cut_traceback(value) if key in TRACEBACKS else _cut_value(value)
        if trace_ids is not None and "trace_id" not in log_data:  # a line written inside a span (a handler's)
            log_data.update(trace_ids())

    def jsonify_log_record(self, log_data) -> str:
        try:
            return super().jsonify_log_record(log_data)
        except TypeError:  # a lone surrogate (an AMQP property decoded with surrogatepass): never a lost line
            return super().jsonify_log_record({k: _valid_text(v) for k, v in log_data.items()})

    def formatTime(self, record, datefmt=None):
        if datefmt:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return self.default_msec_format % (self._second_text, record.msecs)


def _valid_text(value):
    """``value`` with text JSON can carry: a lone surrogate becomes U+FFFD; other values by their text."""
    if isinstance(value, str):
        return SURROGATES.sub("\ufffd", value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return _valid_text(str(value))


def _cut_value(value):
    """A value cut to MAX_VALUE characters; a container (of a handler's own making, or not) by its text."""
    if isinstance(value, str):
        return cut(value)
    text = orjson.dumps(value, default=str).decode() if isinstance(value, (list, tuple, dict)) else str(value)
    return value if len(text) <= MAX_VALUE else cut(text)


# Set by the parent of `eda worker --processes N` for each worker process: its number, on each of its lines.
PROCESS_NUMBER = "EDA_PROCESS_NUMBER"


class ProcessNumber(logging.Filter):
    """Adds ``process_number`` to each line of a worker process of a ``--processes`` parent: the parent's
    lines name it, and two processes' "SIGTERM received" must be told apart."""

    def __init__(self, number: int):
        super().__init__()
        self.number = number

    def filter(self, record) -> bool:
        record.process_number = self.number
        return True


def configure(log_format: str = "json", level: str = "INFO") -> None:
    """Send eda's logs (and kombu's warnings) to stdout in the chosen format."""
    handler = logging.StreamHandler(sys.stdout)
    number = os.environ.get(PROCESS_NUMBER, "")
    if number.isdigit():
        handler.addFilter(ProcessNumber(int(number)))
    if log_format == "json":
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           rename_fields={"levelname": "level", "asctime": "time", "name": "logger"}))
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT))
    # No format of eda's shows where a call came from, or which thread or process made it: the
    # logging HOWTO's optimisations skip that work for every record (a line per event adds up).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("eda").setLevel(level)
