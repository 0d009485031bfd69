"""Logging setup: python-json-logger lines on stdout, or plain text for people."""

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s%(context)s"
CONTEXT_KEYS = ("worker", "event_type", "event_id", "correlation_id", "routing_key", "duration_ms", "error",
                "attempt", "queue")


class TextFormatter(logging.Formatter):
    """The message, then the event's context as ``key=value`` pairs."""

    def format(self, record):
        pairs = [f"{k}={getattr(record, k)}" for k in CONTEXT_KEYS if getattr(record, k, None) is not None]
        record.context = (" " + " ".join(pairs)) if pairs else ""
        return super().format(record)


def configure(log_format: str = "json", level: str = "INFO") -> None:
    """Send eda's logs (and kombu's warnings) to stdout in the chosen format."""
    handler = logging.StreamHandler(sys.stdout)
    if log_format == "json":
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           rename_fields={"levelname": "level", "asctime": "time", "name": "logger"}))
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("eda").setLevel(level)
