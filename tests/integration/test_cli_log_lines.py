"""Log lines stay bounded whatever an event carries (the formatters cut values: tests/unit/test_logs.py)."""

import pytest

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
