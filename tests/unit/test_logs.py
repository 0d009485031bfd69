"""Log lines are bounded: the message and every extra field are cut to 1,000 characters, in both formats."""

import json
import logging
import time

import pytest

from eda import logs


class Captured:
    def __init__(self, capsys):
        self.capsys = capsys

    def getvalue(self) -> str:
        return self.capsys.readouterr().out


@pytest.fixture
def captured(capsys):
    """eda's log lines as configure() writes them to stdout; the root logger restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield Captured(capsys)
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_values_from_an_event_are_cut_to_a_thousand_characters(captured, log_format):
    logs.configure(log_format, "INFO")
    huge = "x" * 5_000_000
    logging.getLogger("eda.worker").error("dead-lettered %s", huge,
                                          extra={"event_type": huge, "event_id": "e-1", "error": huge})
    line = captured.getvalue().strip()
    assert len(line) < 4_000
    assert "e-1" in line and f"...[{5_000_000 - logs.MAX_VALUE} more characters]" in line
    if log_format == "json":
        record = json.loads(line)
        assert record["message"].startswith("dead-lettered xxx")
        assert all(len(record[k]) < 1_100 for k in ("message", "event_type", "error"))


def test_json_cuts_every_extra_field_and_leaves_short_ones_alone(captured):
    logs.configure("json", "INFO")
    logging.getLogger("eda.x").info("ok", extra={"anything": "y" * 3_000, "items": ["z" * 600] * 5, "n": 7,
                                                  "types": ["a", "b"]})
    record = json.loads(captured.getvalue())
    assert len(record["anything"]) < 1_100 and len(record["items"]) < 1_100
    assert record["n"] == 7 and record["types"] == ["a", "b"]


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_traceback_keeps_its_head_and_tail(captured, log_format):
    logs.configure(log_format, "INFO")
    try:
        raise ValueError("v" * 100_000 + " END")
    except ValueError:
        logging.getLogger("eda.x").exception("failed")
    text = captured.getvalue()
    assert len(text) < 8_000 and "Traceback" in text and "END" in text


def test_a_lone_surrogate_from_an_amqp_property_is_logged_as_a_replacement_character(capsys):
    # py-amqp decodes short strings with surrogatepass: a message_id can hold one, which JSON cannot
    logs.configure("json", "INFO")
    logging.getLogger("eda.worker").info("dead-lettered", extra={"event_id": "\ud800abc", "attempt": 1})
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert line["event_id"] == "\ufffdabc" and line["attempt"] == 1 and line["message"] == "dead-lettered"


def test_a_json_line_gives_its_time_in_utc_as_rfc_3339_with_milliseconds(captured, monkeypatch):
    # Given a host whose local time is not UTC, and a line made at a known instant
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        logs.configure("json", "INFO")
        record = logging.makeLogRecord({"name": "eda.worker", "msg": "consuming", "levelname": "INFO",
                                        "levelno": logging.INFO, "created": 1_796_000_000.25, "msecs": 250.0})
        line = logging.getLogger().handlers[-1].format(record)
    finally:
        monkeypatch.undo()
        time.tzset()
    # Then its time is that instant in UTC, as eda tail and the events' own time give it
    assert json.loads(line)["time"] == "2026-11-30T00:53:20.250Z"


# The handled event's fields on a handler's own lines.

def _workers():
    """Three workers logging from their handlers, one of each kind: handler threads, inline (the I/O
    thread) and ``async def`` (the event loop); one line each gives its own event_id."""
    from eda import Worker, handles

    class Threaded(Worker):
        name = "threaded"

        @handles("invoice.requested")
        def send(self, event, ctx):
            self.log.info("sending", extra={"step": 1})
            self.log.info("overriding", extra={"event_id": "the caller's own"})

    class Inline(Worker):
        name = "inline"
        inline = True

        @handles("invoice.requested")
        def send(self, event, ctx):
            self.log.info("sending", extra={"step": 2})

    class Coroutines(Worker):
        name = "coroutines"

        @handles("invoice.requested")
        async def send(self, event, ctx):
            self.log.info("sending", extra={"step": 3})

    return Threaded, Inline, Coroutines


def test_a_handlers_own_json_lines_carry_the_event_it_handles_on_threads_inline_and_on_the_loop(captured, invoices):
    from eda.testing import TestBus

    # Given eda's JSON logs, and three workers of each kind logging from their handlers
    logs.configure("json", "INFO")
    with TestBus(*_workers(), concurrency=2) as bus:
        # When two events are handled, each in its own flow
        first = bus.publish("invoice.requested", {"invoice_id": "i-1", "amount": "5.00"}, correlation_id="flow-1")
        second = bus.publish("invoice.requested", {"invoice_id": "i-2", "amount": "5.00"}, correlation_id="flow-2")
    logging.getLogger("eda.worker.threaded").info("after the bus")
    lines = [json.loads(line) for line in captured.getvalue().splitlines() if line.startswith("{")]
    # Then each line a handler wrote carries its worker and its event's id, type and correlation id
    sending = [r for r in lines if r["message"] == "sending"]
    assert len(sending) == 6
    for record in sending:
        event = first if record["correlation_id"] == "flow-1" else second
        assert record["event_id"] == event.id and record["event_type"] == "invoice.requested"
        assert record["worker"] == {1: "threaded", 2: "inline", 3: "coroutines"}[record["step"]]
    assert {(r["worker"], r["correlation_id"]) for r in sending} == \
        {(w, f) for w in ("threaded", "inline", "coroutines") for f in ("flow-1", "flow-2")}
    # And a field the handler set itself is kept
    overriding = [r for r in lines if r["message"] == "overriding"]
    assert [r["event_id"] for r in overriding] == ["the caller's own"] * 2
    assert {r["correlation_id"] for r in overriding} == {"flow-1", "flow-2"}
    # And a line written once no event is handled carries none
    after = next(r for r in lines if r["message"] == "after the bus")
    assert not {"event_id", "event_type", "correlation_id", "worker"} & set(after)


def test_a_handlers_own_text_lines_carry_the_event_and_its_extra_fields(captured, invoices):
    from eda.testing import TestBus

    # Given eda's text logs
    logs.configure("text", "INFO")
    with TestBus(*_workers()) as bus:
        # When an event is handled
        event = bus.publish("invoice.requested", {"invoice_id": "i-1", "amount": "5.00"}, correlation_id="flow-1")
    lines = captured.getvalue().splitlines()
    # Then a handler's line names the worker and the event, then the handler's own fields
    assert any(line.endswith(f"eda.worker.inline: sending worker=inline event_type=invoice.requested "
                             f"event_id={event.id} correlation_id=flow-1 step=2") for line in lines), lines


def test_text_lines_show_the_callers_extra_fields_by_name_after_the_events_context(captured):
    # Given eda's text logs
    logs.configure("text", "INFO")
    # When a line is written with fields of eda's and of the caller's own, given in any order
    logging.getLogger("eda.worker.reports").info("made", extra={"zeta": "z", "alpha": 1, "event_id": "e-1",
                                                                "nothing": None, "worker": "reports"})
    # Then each is shown: eda's context first in its order, then the others by name (None left out)
    assert captured.getvalue().strip().endswith("eda.worker.reports: made worker=reports event_id=e-1 alpha=1 zeta=z")
