"""Tracing's pure parts and hooks: trace context on the wire (kept, ignored when malformed, carried on to
reactions), the choice of exporters, spans made by the hooks (with the SDK's in-memory exporter, no
network), trace ids in log lines, and nothing of OpenTelemetry imported when tracing is off."""

import json
import logging
import subprocess
import sys
from types import SimpleNamespace

import orjson
import pytest

import eda_shop.contracts  # noqa: F401 - the shop's contracts, registered
from eda import logs, tracing
from eda.tracing import export
from eda.tracing.wire import with_trace_context
from eda.runtime.consumer import Delivery
from eda.contracts.binary import decode_message
from eda.contracts.envelope import decode, encode, new_event, trace_context
from eda.errors import ConfigError

TRACE_ID, PARENT_ID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def stock_event(**attributes):
    return new_event("stock.replenished", {"sku": "A", "quantity": 1}, "test/unit", **attributes)


def wire(**attributes) -> bytes:
    return orjson.dumps({"specversion": "1.0", "id": "e-1", "source": "other/client", "type": "stock.replenished",
                         "data": {"sku": "A", "quantity": 1}, **attributes})


# Context on the wire

@pytest.mark.parametrize("traceparent", [
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", f"00-{'0' * 32}-b7ad6b7169203331-01",
    f"00-{TRACE_ID}-{'0' * 16}-01", TRACEPARENT.upper(), TRACEPARENT + "-extra", "", 42, None, ["x"], "x" * 300,
])
def test_a_malformed_traceparent_is_ignored_with_its_tracestate(traceparent):
    assert trace_context(traceparent, "vendor=1") == (None, None)
    event = decode(wire(traceparent=traceparent, tracestate="vendor=1"))  # never a contract failure
    assert event.traceparent is None and event.tracestate is None


def test_a_valid_traceparent_and_tracestate_are_kept_and_carried_on_to_reactions():
    event = decode(wire(traceparent=TRACEPARENT, tracestate="vendor=1,other=2"))
    assert (event.traceparent, event.tracestate) == (TRACEPARENT, "vendor=1,other=2")
    reaction = event.reaction("inventory.depleted", {"sku": "A", "remaining": 0}, "eda/inventory")
    sent = orjson.loads(encode(reaction))
    assert sent["traceparent"] == TRACEPARENT and sent["tracestate"] == "vendor=1,other=2"
    # A future version may add fields; a tracestate past 512 characters is dropped, the traceparent kept
    assert trace_context("01-" + TRACEPARENT[3:] + "-more", "v=" + "x" * 600) == ("01-" + TRACEPARENT[3:] + "-more",
                                                                                  None)


def test_an_event_without_trace_context_writes_none():
    body = orjson.loads(encode(stock_event()))
    assert "traceparent" not in body and "tracestate" not in body
    assert decode(encode(stock_event())).traceparent is None


def test_binary_mode_brings_trace_context_in_ce_headers_and_a_bad_one_is_no_failure():
    headers = {"ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "sdk", "ce-type": "stock.replenished",
               "ce-traceparent": TRACEPARENT.encode()}
    body = b'{"sku": "A", "quantity": 1}'
    assert decode_message(body, "application/json", headers).traceparent == TRACEPARENT
    headers["ce-traceparent"] = b"\xff\xfe not utf-8"
    assert decode_message(body, "application/json", headers).traceparent is None


def test_a_pre_encoded_body_gets_the_trace_context_spliced_in():
    event = stock_event()
    body = encode(event)
    event.traceparent, event.tracestate = TRACEPARENT, 'v="q"'
    spliced = with_trace_context(body, event)
    assert orjson.loads(spliced) == {**orjson.loads(body), "traceparent": TRACEPARENT, "tracestate": 'v="q"'}
    assert with_trace_context(spliced, event) == spliced  # a body with its context keeps it


# Turning it on

@pytest.mark.parametrize("value, names", [(None, []), ("", []), ("none", []), ("NONE", []), ("otlp", ["otlp"]),
                                          ("otlp, console", ["otlp", "console"]), ("console,none", ["console"])])
def test_tracing_is_on_only_when_otel_traces_exporter_names_an_exporter(value, names):
    environ = {} if value is None else {"OTEL_TRACES_EXPORTER": value}
    assert tracing.exporter_names(environ) == names


def test_an_exporter_that_is_not_installed_or_a_wrong_protocol_is_a_config_error():
    with pytest.raises(ConfigError, match="no span exporter 'zipkin'"):
        export.exporter("zipkin", {})
    with pytest.raises(ConfigError, match="http/protobuf or grpc"):
        export.exporter("otlp", {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert type(export.exporter("otlp", {})).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
    assert type(export.exporter("console", {})).__name__ == "ConsoleSpanExporter"


def test_with_tracing_off_the_runtime_imports_nothing_of_opentelemetry():
    code = ("import sys, cli, eda.worker, eda.runtime.runner, eda.producer, eda.dlq, eda.tracing\n"
            "assert eda.tracing.setup('eda-x', {'OTEL_TRACES_EXPORTER': 'none'}) is None\n"
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


# Spans made by the hooks (the SDK's in-memory exporter)

@pytest.fixture(scope="module")
def exporter():
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)  # as an application would: eda then uses it
    return memory


@pytest.fixture
def active(exporter, monkeypatch):
    exporter.clear()
    on = tracing.Tracing("eda-unit")
    monkeypatch.setattr(tracing, "active", on)
    monkeypatch.setattr(logs, "trace_ids", on.current_ids)
    return on


def delivery(event, headers=None):
    message = SimpleNamespace(headers=headers or {}, delivery_info={"exchange": "ns.events",
                                                                    "routing_key": event.type if event else "x"},
                              properties={})
    consumer = SimpleNamespace(worker=SimpleNamespace(name="inventory"), queue_name="ns.inventory")
    return Delivery(message, consumer, event, session=None)  # the runtime's, as middleware gets it


def by_name(exporter) -> dict:
    return {s.name: s for s in exporter.get_finished_spans()}


def test_handling_publishing_and_settling_make_spans_whose_parents_follow_causation(active, exporter):
    # Given an event that arrived in a foreign trace
    event = decode(wire(traceparent=TRACEPARENT))
    worker = SimpleNamespace(name="inventory")
    confirmed = []
    # When it is handled, a reaction is published and confirmed, and the event settled
    with active.handling(worker, event, "reserve"):
        reaction = event.reaction("inventory.depleted", {"sku": "A", "remaining": 0}, "eda/inventory")
        active.publishing(reaction)
    body, settled = active.sending(reaction, encode(reaction), "ns.events", confirmed.append)
    settled(None)
    active.settled(delivery(event, {"eda-retry-count": 1}), "ok")
    # Then the handling span is a child of the foreign span, the handler's inside it, the reaction's
    # publish span inside that, and the reaction carries its publish span's context
    spans = by_name(exporter)
    process, handler, publish = spans["process stock.replenished"], spans["inventory.reserve"], \
        spans["publish inventory.depleted"]
    assert format(process.context.trace_id, "032x") == TRACE_ID
    assert format(process.parent.span_id, "016x") == PARENT_ID
    assert handler.parent.span_id == process.context.span_id
    assert publish.parent.span_id == handler.context.span_id
    assert orjson.loads(body)["traceparent"] == reaction.traceparent
    assert reaction.traceparent.split("-")[2] == format(publish.context.span_id, "016x")
    assert confirmed == [None]
    assert process.kind.name == "CONSUMER" and publish.kind.name == "PRODUCER"
    assert process.attributes["eda.outcome"] == "ok" and process.attributes["eda.attempt"] == 2
    assert process.attributes["messaging.system"] == "rabbitmq"
    assert process.attributes["messaging.message.conversation_id"] == event.correlation_id
    assert publish.attributes["messaging.destination.name"] == "ns.events"


def test_a_failing_handler_records_its_exception_and_the_outcome_ends_the_span(active, exporter):
    event = decode(wire())
    with pytest.raises(RuntimeError):
        with active.handling(SimpleNamespace(name="inventory"), event, "reserve"):
            raise RuntimeError("gateway down")
    assert "process stock.replenished" not in by_name(exporter)  # open until the event is settled
    active.settled(delivery(event), "retried")
    process = by_name(exporter)["process stock.replenished"]
    assert process.parent is None  # no context on the event: a new trace
    assert process.attributes["eda.outcome"] == "retried" and process.status.status_code.name == "ERROR"
    assert any(e.name == "exception" for e in process.events)


def test_a_circuit_open_give_back_is_no_error_and_a_message_that_is_no_event_gets_a_span(active, exporter):
    event = decode(wire())
    with active.handling(SimpleNamespace(name="payment"), event, "charge"):
        pass
    active.settled(delivery(event), "requeued")
    active.settled(delivery(None), "rejected")
    spans = exporter.get_finished_spans()
    given_back = next(s for s in spans if s.name == "process stock.replenished")
    assert given_back.attributes["eda.outcome"] == "given-back" and given_back.status.status_code.name == "UNSET"
    rejected = next(s for s in spans if s.name == "process x")
    assert rejected.attributes["eda.outcome"] == "rejected" and rejected.status.status_code.name == "ERROR"


def test_a_publish_failure_ends_its_span_with_the_error_and_stamp_writes_a_context(active, exporter):
    event = stock_event()
    body, settled = active.sending(event, None, "ns.events", None)
    assert body is None and event.traceparent is not None  # encoded afterwards, with the context
    settled(RuntimeError("nack"))
    failed = by_name(exporter)["publish stock.replenished"]
    assert failed.status.status_code.name == "ERROR"
    _, settled = active.sending(event, None, "ns.events", None)  # the caller publishes it again
    settled(None)
    again = [s for s in exporter.get_finished_spans() if s.name == "publish stock.replenished"][-1]
    assert again is not failed and again.parent.span_id == failed.context.span_id
    stamped = tracing.stamp(stock_event())
    assert trace_context(stamped.traceparent) == (stamped.traceparent, None)
    assert "create stock.replenished" in by_name(exporter)


def test_an_event_stamped_for_later_is_published_in_the_stamp_s_trace(active, exporter):
    # Given an event stamped in the caller's span and encoded (as an outbox row is)
    from opentelemetry import trace

    with trace.get_tracer("app").start_as_current_span("request") as request:
        stored = encode(tracing.stamp(stock_event()))
    # When another process publishes the stored body, knowing only the event's id and type
    later = stock_event(id=orjson.loads(stored)["id"])
    body, settled = active.sending(later, stored, "ns.events", None)
    settled(None)
    # Then the body is sent as it was, and its publish span is in the request's trace, under the stamp
    assert body == stored
    spans = by_name(exporter)
    create, publish = spans["create stock.replenished"], spans["publish stock.replenished"]
    assert create.parent.span_id == request.get_span_context().span_id
    assert publish.parent.span_id == create.context.span_id
    assert publish.context.trace_id == request.get_span_context().trace_id


@pytest.mark.parametrize("asynchronous", [False, True])
def test_dispatch_runs_a_plain_or_async_handler_inside_its_span_and_its_reaction_under_it(active, exporter,
                                                                                          asynchronous):
    import asyncio

    from opentelemetry import trace

    from eda.middleware import handling
    from eda.settings import Settings
    from eda.worker import Worker, dispatch, dispatch_async, handles

    seen = []

    def take(self, event, ctx):
        seen.append(trace.get_current_span().get_span_context().span_id)
        ctx.publish("inventory.depleted", {"sku": "A", "remaining": 0})

    async def take_async(self, event, ctx):
        take(self, event, ctx)

    Traced = type("Traced", (Worker,), {"name": "traced", "take": handles("stock.replenished")(
        take_async if asynchronous else take)})
    worker, event = Traced(Settings()), decode(wire(traceparent=TRACEPARENT))
    chain = handling(worker, [active], asynchronous)  # tracing on: the middleware around the handler
    ctx = asyncio.run(dispatch_async(worker, event, chain)) if asynchronous else dispatch(worker, event, chain)
    active.settled(delivery(event), "ok")
    spans = by_name(exporter)
    handler = spans["traced.take"]
    assert seen == [handler.context.span_id] and handler.parent.span_id == event.span.get_span_context().span_id
    reaction, _ = ctx.reactions[0]
    assert reaction.traceparent.split("-")[1] == TRACE_ID and reaction.span.parent.span_id == handler.context.span_id


def test_json_log_lines_inside_a_span_carry_its_ids(active, exporter, capsys):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("json", "INFO")
        event = decode(wire(traceparent=TRACEPARENT))
        with active.handling(SimpleNamespace(name="inventory"), event, "reserve") as span:
            logging.getLogger("eda.worker.inventory").info("inside")
        logging.getLogger("eda.worker.inventory").info("outside")
        inside, outside = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert inside["trace_id"] == TRACE_ID and inside["span_id"] == format(span.get_span_context().span_id, "016x")
    assert "trace_id" not in outside


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_request_s_reply_returned_by_its_handler_is_published_under_the_handler_s_span(active, exporter,
                                                                                         own_contracts, asynchronous):
    import asyncio

    from eda import EventData, contract
    from eda.fields import Id
    from eda.middleware import handling
    from eda.settings import Settings
    from eda.worker import Worker, dispatch, dispatch_async, handles

    @contract("quote.given")
    class QuoteGiven(EventData):
        quote_id = Id(required=True)

    @contract("quote.asked", reply="quote.given")
    class QuoteAsked(EventData):
        quote_id = Id(required=True)

    def answer(self, event, ctx):
        return {"quote_id": event.data["quote_id"]}  # the reply's data, returned

    async def answer_async(self, event, ctx):
        return answer(self, event, ctx)

    Quotes = type("Quotes", (Worker,), {"name": "quotes", "answer": handles("quote.asked")(
        answer_async if asynchronous else answer)})
    worker = Quotes(Settings())
    request = new_event("quote.asked", {"quote_id": "q-1"}, "tests", traceparent=TRACEPARENT)
    chain = handling(worker, [active], asynchronous)
    ctx = asyncio.run(dispatch_async(worker, request, chain)) if asynchronous else dispatch(worker, request, chain)
    reply, body = ctx.answer
    spans = by_name(exporter)
    handler = spans["quotes.answer"]
    assert reply.type == "quote.given" and reply.span.parent.span_id == handler.context.span_id
    assert orjson.loads(body)["traceparent"] == reply.traceparent != TRACEPARENT
    assert reply.traceparent.split("-")[1] == TRACE_ID
