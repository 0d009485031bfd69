"""The documented middleware examples (docs/examples), as a team would use them: the rate limit on a
TestBus, plain and async workers (its PostgreSQL case, two processes, is tests/integration/test_middleware.py),
and the tenant header from the environment."""

import json
import re
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import kombu
import pytest

from docs.examples.rate_limit import RateLimit
from docs.examples.tenant_header import TenantHeader
from eda import Producer, Worker, handles
from eda.connection import open_connection
from eda.settings import Settings
from eda.testing import TestBus


class Recorded(RateLimit):
    """The example, remembering the window of each event it let through."""

    def __init__(self, limit, per):
        super().__init__(limit, per)
        self.admitted, self._last = [], threading.local()

    def count(self, worker, period):
        self._last.period = period
        return super().count(worker, period)

    def admit(self, worker):
        wait = super().admit(worker)
        if wait is None:
            self.admitted.append(self._last.period)
        return wait


@pytest.mark.parametrize("asynchronous", [False, True])
def test_the_rate_limit_lets_its_limit_through_per_window_and_keeps_only_the_current_window(invoices,
                                                                                           asynchronous):
    # Given a worker limited to 2 events per 0.3 s
    limit = Recorded(2, per=0.3)

    def send(self, event, ctx):
        self.handled.append(event.data["invoice_id"])

    async def send_async(self, event, ctx):
        send(self, event, ctx)

    Billing = type("Billing", (Worker,), {"name": "billing", "middleware": (limit,), "handled": [],
                                          "send": handles("invoice.requested")(send_async if asynchronous
                                                                               else send)})
    with TestBus(Billing) as bus:
        # When six invoices are requested
        began = time.time()
        for n in range(6):
            bus.publish("invoice.requested", {"invoice_id": f"i-{n}", "amount": 1})
        worker = bus.worker("billing")
        # Then all were handled, no window let more than two through, and it took at least two windows' turns
        assert worker.handled == [f"i-{n}" for n in range(6)]
        assert len(limit.admitted) == 6 and max(Counter(limit.admitted).values()) <= 2
        assert time.time() - began >= 0.3
        # And the store keeps only the current window's count
        rows = limit.store(worker).read("SELECT period, count FROM rate_windows WHERE worker = ?", ("billing",))
        assert len(rows) == 1 and rows[0][1] >= 1


def test_the_tenant_header_comes_from_the_environment_and_goes_on_every_publish(invoices, monkeypatch):
    monkeypatch.setenv("APP_TENANT", "acme")
    namespace = f"ex{uuid.uuid4().hex[:6]}"
    with open_connection(Settings(broker_url="memory://")) as conn:
        queue = kombu.Queue(f"{namespace}.spy", kombu.Exchange(f"{namespace}.events", "topic"), "invoice.#")
        queue(conn.channel()).declare()
        with Producer(Settings(broker_url="memory://", namespace=namespace), middleware=[TenantHeader()]) as producer:
            producer.publish("invoice.requested", {"invoice_id": "i-1", "amount": 3})
        message = queue(conn.channel()).get(no_ack=True)
    assert message.headers["tenant"] == "acme" and json.loads(message.body)["type"] == "invoice.requested"
    assert TenantHeader("globex").tenant == "globex"


@pytest.mark.parametrize("doc, examples", [("README.md", ("rate_limit", "tenant_header")),
                                           ("docs/api.md", ("tenant_header",))])
def test_the_docs_show_the_examples_the_tests_run(doc, examples):
    # The code blocks headed "# docs/examples/NAME.py" are that file, whole: what a reader copies is tested
    root = Path(__file__).resolve().parents[2]
    blocks = re.findall(r"```python\n(# docs/examples/\w+\.py)\n(.*?)```", (root / doc).read_text(), re.S)
    shown = {head.removeprefix("# "): code for head, code in blocks}
    assert sorted(shown) == sorted(f"docs/examples/{name}.py" for name in examples)
    for path, code in shown.items():
        assert code == (root / path).read_text(), f"{doc} shows another {path} than the tested one"
