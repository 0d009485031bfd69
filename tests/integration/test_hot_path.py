"""The fast consume path on a real broker: a burst of waiting events, batched acks, reactions confirmed.

A worker takes up to its prefetch of deliveries at once; these tests check that every one is handled,
its reaction published and the event acked, whatever the concurrency.
"""

import json
import signal

import pytest

from tests.support import handled, wait_until

pytestmark = pytest.mark.integration

BURST = 300


@pytest.fixture
def shipping_backlog(eda, broker, namespace, tmp_path):
    """BURST inventory.reserved events waiting in the shipping worker's queue, no worker running."""
    code, output = eda.run("topology", "declare")
    assert code == 0, output
    path = tmp_path / "reserved.jsonl"
    path.write_text("".join(json.dumps({"orderId": f"ord-{i}", "items": [{"sku": "SKU-1", "quantity": 1}]}) + "\n"
                            for i in range(BURST)))
    code, output = eda.run("publish", "inventory-reserved", "--file", str(path))
    assert code == 0, output
    queue = f"{namespace}.shipping"
    assert wait_until(lambda: broker.depth(queue) == BURST)
    return queue


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_backlog_is_shipped_acked_and_nothing_is_left(eda, broker, shipping_backlog, concurrency):
    # Given a backlog of reserved orders and a spy on the wire
    spy = broker.spy("order.shipped")
    # When the shipping worker drains it
    worker = eda.worker("shipping", EDA_CONCURRENCY=concurrency)
    shipped = spy.wait_for("order.shipped", count=BURST, timeout=60)
    # Then every order is shipped once, each event is handled, and after a graceful stop the queue is
    # empty: every delivery was acked (an unacked one would be back in the queue)
    assert sorted(e["data"]["orderId"] for e in shipped) == sorted(f"ord-{i}" for i in range(BURST))
    wait_until(lambda: worker.count(handled("inventory.reserved", "shipping")) == BURST)
    worker.send(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output
    assert broker.depth(shipping_backlog) == 0
    assert "Traceback" not in worker.output


def test_workers_that_wait_on_nothing_run_inline_the_others_on_handler_threads(eda, gateway):
    # Given --concurrency 4 for every worker, and payment calling a gateway over HTTP
    worker = eda.worker("payment", "inventory", "shipping", EDA_CONCURRENCY=4,
                        EDA_PAYMENT_GATEWAY_URL=gateway.url)
    consuming = {r["worker"]: r for r in worker.records if r.get("message") == "consuming"}
    # Then payment, which waits on the gateway, runs up to 4 handlers on threads, while inventory (local
    # state) and shipping (computation) run theirs on the I/O thread, one at a time
    assert (consuming["payment"]["concurrency"], consuming["payment"]["inline"]) == (4, False)
    for name in ("inventory", "shipping"):
        assert (consuming[name]["concurrency"], consuming[name]["inline"]) == (1, True)


def test_payment_with_the_in_process_gateway_runs_inline(eda):
    # Given no gateway URL: payment charges through the in-process simulation, which never waits
    worker = eda.worker("payment", EDA_CONCURRENCY=4)
    consuming = next(r for r in worker.records if r.get("message") == "consuming")
    assert (consuming["concurrency"], consuming["inline"]) == (1, True)
