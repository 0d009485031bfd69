"""Log lines stay bounded whatever an event carries (the formatters cut values: tests/unit/test_logs.py)."""

import pytest

from tests.registry_scope import contracts_of
from tests.support import wait_until

pytestmark = pytest.mark.integration


def logged(worker, text: str, what: str):
    return wait_until(lambda: any(text in line for line in worker.lines), timeout=30, message=what)


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_five_megabyte_type_gives_short_log_lines(eda, broker, make_order, log_format):
    # Given a payment worker logging in either format
    worker = eda.start("worker", "payment", EDA_LOG_FORMAT=log_format)
    logged(worker, "consuming", "the worker consuming")
    # When an event arrives whose type is 5 MB of text, then a valid order
    broker.publish("order.placed", {"specversion": "1.0", "id": "huge-type-1", "source": "test",
                                    "type": "order." + "x" * 5_000_000, "data": make_order()})
    logged(worker, "dead-lettered", "the event dead-lettered")
    eda.publish("order-placed", make_order())
    # Then the same worker handled the order, and no line it wrote is longer than a few thousand characters
    logged(worker, "handled order.placed", "the next order handled")
    assert max(len(line) for line in worker.lines) < 5_000
    assert "Traceback" not in worker.output and worker.proc.poll() is None


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_handlers_own_lines_name_the_worker_and_the_event_it_handles(eda, app_queues, log_format):
    with contracts_of("tests.integration.logging_app") as logging_app:
        workers = logging_app.WORKERS

    # Given a worker of each kind (handler threads, inline, async def) logging from its handler
    app = {"EDA_APP": "tests.integration.logging_app", "EDA_LOG_FORMAT": log_format}
    app_queues(*workers)
    worker = eda.start("worker", *workers, **app)
    wait_until(lambda: sum("consuming" in line for line in worker.lines) == len(workers), timeout=30,
               message="every worker consuming")
    # When a note is published in a flow of its own
    event_id, = eda.publish("note-taken", {"noteId": "n-1"}, args=("--correlation-id", "flow-7"), **app)
    # Then each handler's line carries its worker, the event's id, type and correlation id, and its own field
    lines = wait_until(lambda: [line for line in worker.lines if "taking the note" in line]
                       if sum("taking the note" in line for line in worker.lines) == len(workers) else None,
                       timeout=30, message="a line from each handler")
    for name, step in zip(workers, ("threads", "inline", "async")):
        if log_format == "json":
            record = next(r for r in worker.records if r.get("message") == "taking the note" and r["step"] == step)
            assert (record["worker"], record["event_id"], record["event_type"], record["correlation_id"]) == \
                (name, event_id, "note.taken", "flow-7"), record
        else:
            assert any(line.endswith(f"taking the note worker={name} event_type=note.taken event_id={event_id} "
                                     f"correlation_id=flow-7 step={step}") for line in lines), lines
