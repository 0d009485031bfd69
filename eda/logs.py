"""Logging setup: python-json-logger lines on stdout, or plain text for people."""

import logging
import sys
import time

from pythonjsonlogger.orjson import OrjsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s%(context)s"
CONTEXT_KEYS = ("worker", "event_type", "event_id", "correlation_id", "routing_key", "duration_ms", "error",
                "attempt", "queue")


class TextFormatter(logging.Formatter):
    """The message, then the event's context as ``key=value`` pairs."""

    def format(self, record):
        pairs = [f"{k}={getattr(record, k)}" for k in CONTEXT_KEYS if getattr(record, k, None) is not None]
        record.context = (" " + " ".join(pairs)) if pairs else ""
        return super().format(record)


class JsonFormatter(OrjsonFormatter):
    """python-json-logger's orjson formatter, cheap enough for a line per handled event: extra fields
    are picked with one set lookup per record attribute, and the time text is built once a second."""

    _second, _second_text = None, ""

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

    def formatTime(self, record, datefmt=None):
        if datefmt:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return self.default_msec_format % (self._second_text, record.msecs)


def configure(log_format: str = "json", level: str = "INFO") -> None:
    """Send eda's logs (and kombu's warnings) to stdout in the chosen format."""
    handler = logging.StreamHandler(sys.stdout)
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
