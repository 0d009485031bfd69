"""Recurring schedules end to end: tests/integration/scheduling_app.py declares one ticking every second;
real ``eda outbox relay`` processes (two on PostgreSQL, one on SQLite) publish its ticks to the real broker."""

import signal
import time
from datetime import datetime

import pytest

from tests.outboxes import app, pg_app, relay  # noqa: F401 (fixtures: app, pg_app)

pytestmark = pytest.mark.integration

APP = {"EDA_APP": "tests.integration.scheduling_app"}
EVERY_SECOND = {**APP, "SCHEDULING_EVERY_SECOND": "1"}


def ticks(spy) -> list[str]:
    """The tick times (the CloudEvent's time) of the every-second schedule's events, as they arrived."""
    return [e["time"] for e in spy.of_type("reminder.due")]


def consecutive(times: list[str]) -> bool:
    seconds = [datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() for t in times]
    return all(b - a == 1.0 for a, b in zip(seconds, seconds[1:]))


def test_a_schedule_ticking_every_second_gives_one_event_per_tick_across_two_relays(eda, broker, pg_app):
    spy = broker.spy("reminder.due")
    # Given two relays on PostgreSQL, both running the app that declares the schedule
    first, second = relay(eda, pg_app, **EVERY_SECOND), relay(eda, pg_app, **EVERY_SECOND)
    for proc in (first, second):
        proc.wait_for_log(lambda r: r.get("schedule") == "every-second", what="the schedule loaded")
    # When they run for a few seconds
    spy.wait_for("reminder.due", count=6, timeout=30)
    for proc in (first, second):
        proc.send(signal.SIGTERM)
        assert proc.wait() == 0  # (what they published is in the spy's queue: confirmed before they stopped)
    # Then each tick was published exactly once, every second, none missing, each on time
    events = spy.of_type("reminder.due")
    times = sorted(ticks(spy))
    assert len(times) == len(set(times)) >= 6, times
    assert consecutive(times), times
    assert len({e["id"] for e in events}) == len(events)
    assert {e["id"]: e["id"] == e["correlationid"] and e["source"] == "eda/schedule/every-second"
            for e in events} == {e["id"]: True for e in events}
    assert all(e["data"] == {"reminderId": "tick"} for e in events)


def test_a_tick_that_falls_due_while_no_relay_runs_is_published_when_one_is_back(eda, broker, app):
    spy = broker.spy("reminder.due")
    first = relay(eda, app, **EVERY_SECOND)
    spy.wait_for("reminder.due", count=2, timeout=30)
    # When the relay stops (the next tick is written already) and 3 s of ticks fall due without one
    first.send(signal.SIGTERM)
    assert first.wait() == 0
    time.sleep(3)
    before = sorted(ticks(spy))
    # Then a relay started again publishes that next tick at once (late, not lost), then every tick again;
    # the others that fell due while none ran are skipped
    restarted = time.time()
    relay(eda, app, **EVERY_SECOND)
    spy.wait_for("reminder.due", count=len(before) + 3, timeout=30)
    after = sorted(ticks(spy))[len(before):]
    assert consecutive([before[-1], after[0]])  # the tick that was written ahead when the relay stopped
    assert all(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() > restarted for t in after[1:])
    assert consecutive(after[1:]) and len(set(sorted(ticks(spy)))) == len(ticks(spy))


def test_a_recurring_schedule_whose_data_breaks_its_contract_stops_the_relay_at_start(eda, env):
    code, output = eda.run("outbox", "relay", **APP, SCHEDULING_BAD_DATA="1")
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2 and lines[-1].startswith("error: recurring schedule 'broken': ") and "reminder" in lines[-1], \
        output
    assert "Traceback" not in output


def test_eda_schedule_recurring_lists_the_apps_schedules(eda):
    code, output = eda.run("schedule", "recurring", **EVERY_SECOND)
    assert code == 0 and "every-second" in output and "* * * * * *" in output and "Every second" in output, output
