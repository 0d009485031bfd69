"""What tracing costs per event, in process: decode, handle (one reaction), publish and settle, with
tracing off and on (the SDK with a batch processor and an exporter that drops the spans, so the cost is
eda's and the SDK's, not a backend's). `python -m benchmarks.tracing_cost [--n N]`.

Off, there is no tracing middleware: the handler is called and the reaction published directly, as
with no middleware at all; on, tracing is the middleware around both, an event makes four spans (its
handling, the handler's own, and its reaction's publish, beside the publisher's in another process)
and its reaction carries a traceparent.
"""

import argparse
import time
from types import SimpleNamespace

import eda_shop.contracts  # noqa: F401 - the shop's contracts
from eda import tracing
from eda.contracts.envelope import decode, encode, new_event
from eda.middleware import Outgoing, handling, publish_through, publishing
from eda.runtime.consumer import Delivery
from eda.settings import Settings
from eda.worker import Worker, dispatch, handles


class Bench(Worker):
    name = "bench"

    @handles("stock.replenished")
    def take(self, event, ctx):
        ctx.publish("inventory.depleted", {"sku": event.data["sku"], "remaining": 0})


def confirmed(message) -> None:
    """The end of the publish chain: the broker's confirm, at once."""
    message.sent = True
    message.settle(None)


def one_event(worker, body, chains) -> None:
    """What the runtime does for one event, less the broker: its middleware where it runs it."""
    handle, publish, on = chains
    event = decode(body, frozenset(worker.handlers))
    ctx = dispatch(worker, event, handle)
    for reaction, reaction_body in ctx.reactions:
        if publish is not None:
            publish_through(publish, Outgoing(reaction, "bench.events", reaction.type, reaction_body, {}, {},
                                              send=confirmed))
    if on is not None:
        message = SimpleNamespace(headers={}, delivery_info={"exchange": "bench.events",
                                                             "routing_key": event.type}, properties={})
        consumer = SimpleNamespace(worker=worker, queue_name="bench.bench")
        on.on_settled(Delivery(message, consumer, event, session=None), "ok")  # as the runtime hands it over


def measure(worker, bodies, on) -> float:
    middleware = [on] if on is not None else []
    chains = handling(worker, middleware, asynchronous=False), publishing(middleware), on
    for body in bodies[:200]:  # warm up
        one_event(worker, body, chains)
    started = time.perf_counter()
    for body in bodies:
        one_event(worker, body, chains)
    return (time.perf_counter() - started) / len(bodies) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    on = tracing.Tracing("eda-bench")
    worker = Bench(Settings())
    publisher_span = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    plain = [encode(new_event("stock.replenished", {"sku": "A", "quantity": 1}, "bench")) for _ in range(args.n)]
    traced = [encode(new_event("stock.replenished", {"sku": "A", "quantity": 1}, "bench",
                               traceparent=publisher_span)) for _ in range(args.n)]
    off_us = min(measure(worker, plain, None) for _ in range(args.rounds))
    on_us = min(measure(worker, traced, on) for _ in range(args.rounds))
    provider.shutdown()
    print(f"per event (decode, handler with one reaction, publish and settle middleware), best of {args.rounds}:")
    print(f"  tracing off: {off_us:7.1f} µs")
    print(f"  tracing on:  {on_us:7.1f} µs  (+{on_us - off_us:.1f} µs, {on_us / off_us:.2f}x)")


if __name__ == "__main__":
    main()
