"""Log lines are bounded: the message and every extra field are cut to 1,000 characters, in both formats."""

import json
import logging

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


def test_text_lines_show_the_callers_extra_fields_by_name_after_the_events_context(captured):
    # Given eda's text logs
    logs.configure("text", "INFO")
    # When a line is written with fields of eda's and of the caller's own, given in any order
    logging.getLogger("eda.worker.reports").info("made", extra={"zeta": "z", "alpha": 1, "event_id": "e-1",
                                                                "nothing": None, "worker": "reports"})
    # Then each is shown: eda's context first in its order, then the others by name (None left out)
    assert captured.getvalue().strip().endswith("eda.worker.reports: made worker=reports event_id=e-1 alpha=1 zeta=z")
