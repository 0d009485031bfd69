"""OpenTelemetry traces in real processes on the real broker: an order followed through the three
workers, retries, a dead letter and its replay, a foreign client's traceparent, trace ids in the logs,
and no OpenTelemetry at all when tracing is off.

The processes export with the SDK's own machinery, through a test-only exporter
(tests/otel/eda_test_spans.py) selected by ``OTEL_TRACES_EXPORTER`` like any installed exporter; it
writes each process's finished spans as JSON lines into a folder the test reads."""

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pika
import pytest

from tests.support import handled, wait_until

pytestmark = pytest.mark.integration

PLUGIN = Path(__file__).resolve().parent.parent / "otel"
EXPORTER = "eda_test_spans"
APP = '''
    """A test worker: fails orders named retry-* twice, dead-letters dead-* while a file exists, and
    makes a span of its own for user-*; logs from its handler whether OpenTelemetry is loaded."""
    import os
    import sys
    from pathlib import Path

    from eda import PermanentError, Worker, handles


    class TraceTest(Worker):
        name = "tracetest"
        attempts = {}

        @handles("order.placed")
        def take(self, event, ctx):
            order = event.data["order_id"]
            loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
            self.log.info("taking the order", extra={"order": order, "otel_modules": len(loaded)})
            if order.startswith("retry-"):
                self.attempts[order] = self.attempts.get(order, 0) + 1
                if self.attempts[order] < 3:
                    raise RuntimeError(f"attempt {self.attempts[order]} fails")
            if order.startswith("dead-") and Path(os.environ["TRACETEST_BROKEN"]).exists():
                raise PermanentError("broken until the file is removed")
            if order.startswith("user-"):
                from opentelemetry import trace

                with trace.get_tracer("tracetest").start_as_current_span("user work"):
                    self.log.info("inside my own span", extra={"order": order})
'''
PRODUCER = '''
import json, sys
from eda import Producer, Settings

with Producer(Settings.from_env(), source="shop/web") as producer:
    print(producer.publish("order-placed", json.loads(sys.argv[1])).id)
'''


@pytest.fixture
def spans_dir(tmp_path):
    return tmp_path / "spans"


@pytest.fixture
def traced(tmp_path, spans_dir):
    """The environment of a traced process: the test exporter, installed as an entry point."""
    site = tmp_path / "otel-site"
    info = site / "eda_test_spans-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: eda-test-spans\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[opentelemetry_traces_exporter]\n{EXPORTER} = eda_test_spans:FileSpanExporter\n")
    return {"OTEL_TRACES_EXPORTER": EXPORTER, "EDA_TEST_SPANS": str(spans_dir),
            "PYTHONPATH": f"{site}:{PLUGIN}", "OTEL_BSP_SCHEDULE_DELAY": "50"}


@pytest.fixture
def app(tmp_path, eda, broker, namespace):
    """The test worker's project folder, as the current directory of every eda command."""
    root = tmp_path / "app"
    root.mkdir()
    (root / "tracetest.py").write_text(textwrap.dedent(APP))
    eda.cwd = root
    eda.env = {**eda.env, "EDA_APP": "tracetest"}
    yield root
    eda.stop_all()
    for suffix in ("", ".dlq", ".retry.200ms", ".retry.400ms"):
        broker.channel.queue_delete(f"{namespace}.tracetest{suffix}")


def spans(folder: Path) -> list[dict]:
    found = []
    for path in sorted(folder.glob("*.jsonl")) if folder.exists() else ():
        found.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return found


def wait_for_spans(folder, predicate, count=1, what="spans") -> list[dict]:
    def found():
        matching = [s for s in spans(folder) if predicate(s)]
        return matching if len(matching) >= count else None

    return wait_until(found, timeout=30, message=what)


def named(name):
    return lambda s: s["name"] == name


def snake_order(order_id: str) -> dict:
    return {"order_id": order_id, "user_id": "u1", "total_amount": "30.00",
            "items": [{"sku": "SKU-1", "quantity": 3, "unit_price": "10.00"}]}


FLOW_SPANS = {"publish order.placed", "process order.placed", "publish payment.succeeded", "process payment.succeeded",
              "publish inventory.reserved", "process inventory.reserved", "publish order.shipped"}


def whole_flow(found: list[dict], order_id: str) -> bool:
    """True once the spans of an order's flow are all exported: its publish and process spans, and
    every span of their traces with its parent (the handlers' own, the gateway call's)."""
    flow = [s for s in found if s["attributes"].get("messaging.message.conversation_id") == order_id]
    traces = {s["trace_id"] for s in flow}
    everything = [s for s in found if s["trace_id"] in traces]
    ids = {s["span_id"] for s in everything}
    return (FLOW_SPANS <= {s["name"] for s in flow} and any(s["kind"] == "CLIENT" for s in everything)
            and all(s["parent_id"] is None or s["parent_id"] in ids for s in everything))


def test_an_order_from_the_producer_api_is_one_trace_through_payment_inventory_and_shipping(
        eda, broker, traced, spans_dir, gateway, env):
    # Given the three workers traced, payment calling the gateway over HTTP, instrumented
    eda.worker("payment", EDA_PAYMENT_GATEWAY_URL=gateway.url, EDA_TEST_INSTRUMENT_HTTP="1", **traced)
    eda.worker("inventory", **traced)
    eda.worker("shipping", **traced)
    eda.publish("stock-replenished", {"sku": "SKU-1", "quantity": 10})
    # When an application publishes an order with the Producer API
    run = subprocess.run([sys.executable, "-c", PRODUCER, json.dumps(snake_order("ord-traced"))],
                         env={**env, **traced}, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    order_id = run.stdout.split()[-1]
    # Then every span of its flow, in four processes, is in one trace (each process exports its spans
    # on a schedule of its own: shipping's may be written before inventory's, so wait for all of them)
    wait_until(lambda: whole_flow(spans(spans_dir), order_id), timeout=30,
               message="every span of the order's flow, each with its parent")
    flow = [s for s in spans(spans_dir)
            if s["attributes"].get("messaging.message.conversation_id") == order_id]
    trace_ids = {s["trace_id"] for s in flow}
    assert len(trace_ids) == 1, flow
    trace_id, = trace_ids
    everything = [s for s in spans(spans_dir) if s["trace_id"] == trace_id]
    by_id = {s["span_id"]: s for s in everything}
    names = {s["name"] for s in everything}
    assert FLOW_SPANS <= names
    root, = [s for s in everything if s["parent_id"] is None]
    assert root["name"] == "publish order.placed" and root["service"] == "eda-producer"
    assert root["kind"] == "PRODUCER" and root["attributes"]["messaging.destination.name"].endswith(".events")

    # And parents follow causation: each handling span is a child of its event's publish span, and each
    # reaction's publish span descends from the handling span of the event that caused it
    def ancestors(span):
        while span["parent_id"] is not None:
            span = by_id[span["parent_id"]]
            yield span

    for process in [s for s in everything if s["name"].startswith("process ")]:
        parent = by_id[process["parent_id"]]
        assert parent["name"] == "publish " + process["name"].split(" ", 1)[1]
        assert parent["attributes"]["messaging.message.id"] == process["attributes"]["messaging.message.id"]
        assert process["kind"] == "CONSUMER" and process["attributes"]["eda.outcome"] == "ok"
        assert process["attributes"]["messaging.system"] == "rabbitmq"
        assert process["service"] == f"eda-{process['attributes']['eda.worker']}"
    for publish in [s for s in everything if s["name"].startswith("publish ") and s is not root]:
        cause = publish["attributes"]["eda.causation_id"]
        assert any(a["name"].startswith("process ") and a["attributes"]["messaging.message.id"] == cause
                   for a in ancestors(publish)), publish
    # And the handler's own work is inside its handling span: the gateway call nests under it
    http, = [s for s in everything if s["kind"] == "CLIENT"]
    assert [a["name"] for a in ancestors(http)][:2] == ["payment.charge", "process order.placed"]


def test_a_retried_event_s_attempts_are_spans_of_its_trace(eda, app, traced, spans_dir):
    # Given the test worker, which fails an order twice before it takes it
    eda.worker("tracetest", **traced, TRACETEST_BROKEN="/nonexistent")
    # When such an order is published with eda publish
    event_id, = eda.publish("order-placed", {"orderId": "retry-1", "userId": "u", "totalAmount": "1.00",
                                             "items": [{"sku": "A", "quantity": 1}]}, **traced)
    # Then its three attempts are three handling spans under the one publish span
    attempts = wait_for_spans(spans_dir, lambda s: s["name"] == "process order.placed"
                              and s["attributes"]["messaging.message.id"] == event_id, count=3, what="3 attempts")
    attempts.sort(key=lambda s: s["attributes"]["eda.attempt"])
    publish, = [s for s in spans(spans_dir) if s["name"] == "publish order.placed"]
    assert publish["service"] == "eda-publish"
    assert {s["trace_id"] for s in attempts} == {publish["trace_id"]}
    assert {s["parent_id"] for s in attempts} == {publish["span_id"]}
    assert [(s["attributes"]["eda.attempt"], s["attributes"]["eda.outcome"], s["status"]) for s in attempts] == [
        (1, "retried", "ERROR"), (2, "retried", "ERROR"), (3, "ok", "UNSET")]


def test_a_dead_lettered_and_replayed_event_continues_its_trace(eda, app, traced, spans_dir, tmp_path):
    # Given an event dead-lettered by the test worker
    broken = tmp_path / "broken"
    broken.touch()
    eda.worker("tracetest", **traced, TRACETEST_BROKEN=str(broken))
    event_id, = eda.publish("order-placed", {"orderId": "dead-1", "userId": "u", "totalAmount": "1.00",
                                             "items": [{"sku": "A", "quantity": 1}]}, **traced)
    dead, = wait_for_spans(spans_dir, lambda s: s["attributes"].get("eda.outcome") == "dead-lettered",
                           what="the dead-lettered attempt")
    # When the cause is fixed and the event replayed
    broken.unlink()
    code, output = eda.run("dlq", "replay", "tracetest", **traced)
    assert code == 0, output
    # Then its handling after the replay is in the same trace, beside the replay's own span
    ok, = wait_for_spans(spans_dir, lambda s: s["attributes"].get("eda.outcome") == "ok", what="the replayed attempt")
    replay, = wait_for_spans(spans_dir, named("replay order.placed"), what="the replay span")
    publish, = [s for s in spans(spans_dir) if s["name"] == "publish order.placed"]
    for span in (dead, ok, replay):
        assert span["trace_id"] == publish["trace_id"] and span["parent_id"] == publish["span_id"]
    assert ok["attributes"]["messaging.message.id"] == event_id and replay["service"] == "eda-dlq"
    assert dead["status"] == "ERROR"


def foreign_event(event_id: str, **attributes) -> bytes:
    return json.dumps({"specversion": "1.0", "id": event_id, "source": "legacy/pika", "type": "order.placed",
                       "datacontenttype": "application/json", **attributes,
                       "data": {"orderId": f"user-{event_id}", "userId": "u", "totalAmount": "1.00",
                                "items": [{"sku": "A", "quantity": 1}]}}).encode()


def pika_publish(broker_url, namespace, body: bytes) -> None:
    url = broker_url if not broker_url.endswith("//") else broker_url[:-1] + "%2F"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(f"{namespace}.events", "order.placed", body,
                              pika.BasicProperties(content_type="application/cloudevents+json", delivery_mode=2),
                              mandatory=True)
    finally:
        connection.close()


def test_a_foreign_traceparent_is_continued_a_malformed_one_ignored_and_log_lines_carry_trace_ids(
        eda, app, traced, spans_dir, broker_url, namespace, broker):
    # Given the traced test worker
    worker = eda.worker("tracetest", **traced, TRACETEST_BROKEN="/nonexistent")
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    # When another client (pika) publishes one event in its own trace and one with a malformed traceparent
    pika_publish(broker_url, namespace, foreign_event("foreign-1", traceparent=f"00-{trace_id}-{parent_id}-01",
                                                      tracestate="vendor=x"))
    pika_publish(broker_url, namespace, foreign_event("foreign-2", traceparent="00-not-a-trace-01"))
    # Then the first is handled in the client's trace, as a child of its span
    first, = wait_for_spans(spans_dir, lambda s: s["name"] == "process order.placed"
                            and s["attributes"]["messaging.message.id"] == "foreign-1", what="foreign-1")
    assert first["trace_id"] == trace_id and first["parent_id"] == parent_id
    # And the second starts a new trace, handled like any event: no failure, no dead letter
    second, = wait_for_spans(spans_dir, lambda s: s["name"] == "process order.placed"
                             and s["attributes"]["messaging.message.id"] == "foreign-2", what="foreign-2")
    assert second["parent_id"] is None and second["attributes"]["eda.outcome"] == "ok"
    assert second["trace_id"] != trace_id and broker.depth(f"{namespace}.tracetest.dlq") == 0
    # And a span the handler makes itself nests under the handler's span
    user, = wait_for_spans(spans_dir, lambda s: s["name"] == "user work" and s["trace_id"] == trace_id,
                           what="the handler's own span")
    handler, = wait_for_spans(spans_dir, lambda s: s["span_id"] == user["parent_id"],
                              what="the handler's span (it ends after its own span, maybe in a later export)")
    assert handler["name"] == "tracetest.take" and handler["parent_id"] == first["span_id"]
    # And every log line written while handling the event carries its trace id and a span id
    worker.wait_for_log(handled("order.placed"))
    lines = [r for r in worker.records if r.get("order") == "user-foreign-1" or r.get("event_id") == "foreign-1"]
    assert {r["message"] for r in lines} >= {"taking the order", "inside my own span", "handled order.placed"}
    for record in lines:
        assert record["trace_id"] == trace_id and len(record["span_id"]) == 16, record
    assert next(r for r in lines if r["message"] == "inside my own span")["span_id"] == user["span_id"]


def test_tracing_off_loads_no_opentelemetry_and_writes_no_trace_context(eda, app, broker):
    # Given the test worker with OTEL_TRACES_EXPORTER unset (and one with it "none")
    spy = broker.spy()
    for setting in ({}, {"OTEL_TRACES_EXPORTER": "none"}):
        worker = eda.worker("tracetest", TRACETEST_BROKEN="/nonexistent", **setting)
        # When an order is published and handled
        eda.publish("order-placed", {"orderId": "off-1", "userId": "u", "totalAmount": "1.00",
                                     "items": [{"sku": "A", "quantity": 1}]}, **setting)
        record = worker.wait_for_log(lambda r: r.get("message") == "taking the order")
        # Then no OpenTelemetry module was imported, and neither the logs nor the wire carry trace context
        assert record["otel_modules"] == 0
        assert not any("trace_id" in r for r in worker.records)
        worker.send()
        assert worker.wait() == 0
    assert all("traceparent" not in e for e in spy.of_type("order.placed"))


def test_an_exporter_that_is_not_installed_is_one_error_line_and_nothing_is_published(eda, broker):
    # Given tracing asked of an exporter that no installed package provides
    spy = broker.spy()
    # When an event is published
    code, output = eda.run("publish", "stock-replenished", "--data", '{"sku": "A", "quantity": 1}',
                           OTEL_TRACES_EXPORTER="zipkin_json")
    # Then it is a usage error naming the exporter and the extra, not a traceback, and nothing is sent
    assert code == 2, output
    assert output.strip().splitlines() == [
        "error: OTEL_TRACES_EXPORTER: no span exporter 'zipkin_json' is installed (pip install 'eda[otel]' "
        "brings otlp over http/protobuf and console)"]
    assert spy.of_type("stock.replenished") == []
