"""Mistakes fail fast and loud under `eda worker` on a real broker: a worker defined wrongly does not
start (one line, exit 2, nothing declared); a reaction of a type no contract knows and a handler the
call cannot take are dead-lettered at their first attempt, never through a retry queue; a KeyError,
which may depend on the data, is still retried."""

import json

import pytest

from tests.support import wait_until

pytestmark = pytest.mark.integration

MISTAKES = {"EDA_APP": "tests.integration.mistakes_app"}
BROKEN = {"EDA_APP": "tests.integration.broken_app"}
RETRY_QUEUES = (".retry.200ms", ".retry.400ms")  # the test delays (tests/conftest.py)


@pytest.fixture
def mistakes(eda, app_queues):
    app_queues("mistakes", "bad-signature", "doubled")
    return eda.worker("mistakes", **MISTAKES)


def publish(eda, event, data) -> str:
    [event_id] = eda.publish(event, data, **MISTAKES)
    return event_id


def dead_letter(broker, namespace, event_id):
    dlq = f"{namespace}.mistakes.dlq"
    return wait_until(lambda: next((m for m in broker.peek(dlq) if m.properties["message_id"] == event_id), None),
                      message=f"event {event_id} in the DLQ")


def without_retry_queues(broker, namespace):
    """Delete the worker's retry queues: a copy sent to one now would come back unroutable, so an event
    reaching the DLQ went there without any retry queue."""
    for suffix in RETRY_QUEUES:
        broker.channel.queue_delete(f"{namespace}.mistakes{suffix}")


@pytest.mark.parametrize("event, data, error, message", [
    ("mistake-requested", {"mistakeId": "m-1", "kind": "unknown-reaction"}, "UnknownEvent",
     "unknown event 'mistake.never.registered'"),
    ("mistake-wrapped", {"mistakeId": "m-2"}, "TypeError", "positional argument"),
])
def test_a_programming_error_is_dead_lettered_at_its_first_attempt(eda, broker, namespace, mistakes, event, data,
                                                                    error, message):
    # Given the worker consuming, and no retry queue to send a copy to
    without_retry_queues(broker, namespace)
    # when the mistake is made
    event_id = publish(eda, event, data)
    # then its DLQ copy says why, after one attempt
    dead = dead_letter(broker, namespace, event_id)
    assert dead.headers["eda-retry-count"] == 0
    assert dead.headers["eda-exception-type"] == error and message in dead.headers["eda-exception-message"]
    assert dead.headers["eda-failure-category"] == "programming"
    line = mistakes.wait_for_log(lambda r: r.get("event_id") == event_id and r.get("level") == "ERROR")
    assert line["message"] == "dead-lettered (programming)" and line["attempt"] == 1
    assert not any(r.get("event_id") == event_id and "retrying" in str(r.get("message")) for r in mistakes.records)
    assert not any("could not move" in str(r.get("message")) for r in mistakes.records)
    assert broker.depth(f"{namespace}.mistakes") == 0  # acked, once its copy was in the DLQ


def test_a_key_error_inside_a_handler_is_still_retried(eda, broker, namespace, mistakes):
    event_id = publish(eda, "mistake-requested", {"mistakeId": "m-3", "kind": "key-error"})
    dead = dead_letter(broker, namespace, event_id)
    assert (dead.headers["eda-retry-count"], dead.headers["eda-exception-type"]) == (2, "KeyError")
    assert dead.headers["eda-failure-category"] == "transient"
    retried = [r["message"] for r in mistakes.records if r.get("event_id") == event_id and r.get("level") == "WARNING"]
    assert retried == ["failed; retrying in 200ms", "failed; retrying in 400ms"]


@pytest.mark.parametrize("worker, line", [
    ("bad-signature", "error: tests.integration.broken_app.BadSignature.charge: eda calls handlers with (event, "
                      "ctx); charge(self, event) takes only 1 of them"),
    ("doubled", "error: tests.integration.broken_app.Doubled: two handlers of 'order.placed': charge ('order-placed') "
                "and charge_again ('order.placed'); one event type has one handler in a worker"),
])
@pytest.mark.parametrize("processes", [(), ("--processes=2",)], ids=["one process", "a parent of two"])
def test_a_worker_defined_wrongly_does_not_start(eda, broker, namespace, app_queues, worker, line, processes):
    app_queues(worker)
    code, output = eda.run("worker", worker, *processes, **BROKEN)
    assert (code, output) == (2, line)
    assert not broker.exists(f"{namespace}.{worker}")  # nothing declared, nothing consumed


@pytest.mark.parametrize("worker, line", [
    ("setup-fails", "error: worker 'setup-fails' could not start: setup raised TypeError: expected a str for the "
                    "mail host, not an int"),
    ("async-setup-fails", "error: worker 'async-setup-fails' could not start: setup raised ConnectionRefusedError: "
                          "[Errno 111] Connection refused"),
])
def test_a_setup_that_raises_is_one_line_and_exit_1_its_traceback_in_the_log(eda, broker, namespace, app_queues,
                                                                              worker, line):
    # Given a worker whose setup raises (plain, or async def)
    app_queues(worker)
    # When it is started
    proc = eda.start("worker", worker, **BROKEN)
    code = proc.wait(60)
    # Then it exits 1 with one line naming the worker and the exception, and nothing declared
    assert (code, proc.lines[-1]) == (1, line), proc.output
    assert not any(text.startswith(("Traceback", "  File")) for text in proc.lines), proc.output
    assert not broker.exists(f"{namespace}.{worker}")
    # And the log holds the traceback, at ERROR, for whoever debugs it
    logged = next(r for r in proc.records if r.get("level") == "ERROR")
    assert logged["message"] == f"worker {worker!r} could not start: setup raised" and logged["worker"] == worker
    assert "Traceback" in logged["exc_info"] and "in setup" in logged["exc_info"]


def test_a_config_error_from_setup_is_how_a_worker_refuses_a_bad_setting_one_line_exit_2(eda, app_queues):
    app_queues("setup-refuses")
    code, output = eda.run("worker", "setup-refuses", **BROKEN)
    assert (code, output) == (2, "error: --mail-host (EDA_SETUP_REFUSES_MAIL_HOST): not a host name: 'smtp:://'")


def test_a_worker_with_handlers_and_no_name_is_refused_when_the_app_is_discovered(eda):
    code, output = eda.run("worker", "shipping", EDA_APP="tests.integration.nameless_app")
    assert code == 2 and len(output.splitlines()) == 1, output
    assert output.startswith("error: tests.integration.nameless_app.Shipping (tests.integration.nameless_app): a "
                             "worker with handlers needs a name"), output
