"""The baselines: plain kombu doing the same broker work as eda, with nothing on top.

Each function returns events per second. Raw kombu publishes the CloudEvent as a ready dict with its
own JSON serializer; eda pays for building and encoding its events itself.
"""

import time

import kombu
from kombu.utils import json
from kombu import Queue

from benchmarks.bench import PREFETCH, Bench
from eda.contracts.envelope import to_wire


def publish(bench: Bench, events, *, confirm: bool) -> float:
    """Publish persistent events to the events exchange; with ``confirm``, wait for each confirm."""
    wires = [to_wire(e) for e in events]
    conn = bench.connection(confirm_publish=confirm)
    try:
        producer = kombu.Producer(conn.channel(), exchange=bench.exchange, serializer="json")
        started = time.perf_counter()
        for wire in wires:
            producer.publish(wire, routing_key=wire["type"], delivery_mode=2, message_id=wire["id"])
        return len(wires) / (time.perf_counter() - started)
    finally:
        conn.release()


def _consume(conn, queue: str, n: int, on_message) -> float:
    done = [0]

    def counted(message):
        on_message(message)
        done[0] += 1

    consumer = kombu.Consumer(conn.channel(), queues=[Queue(queue, no_declare=True)], on_message=counted,
                              prefetch_count=PREFETCH, accept=["json"])
    started = time.perf_counter()
    consumer.consume()
    while done[0] < n:
        conn.drain_events(timeout=10)
    elapsed = time.perf_counter() - started
    consumer.cancel()
    return n / elapsed


def consume(bench: Bench, queue: str, n: int) -> float:
    """Consume and ack ``n`` pre-loaded events, one ack per event."""
    conn = bench.connection()
    try:
        return _consume(conn, queue, n, lambda message: message.ack())
    finally:
        conn.release()


def react(bench: Bench, queue: str, n: int) -> float:
    """Consume ``n`` pre-loaded events; for each, publish a reaction with a confirm, then ack.

    The reaction goes out on a second connection: publishing with confirms from inside a consumer
    callback on the draining connection recurses in kombu."""
    consume_conn, publish_conn = bench.connection(), bench.connection(confirm_publish=True)
    producer = kombu.Producer(publish_conn.channel(), exchange=bench.exchange, serializer="json")

    def on_message(message):
        event = json.loads(message.body)  # kombu's JSON; the content type is CloudEvents'
        order_id = event["data"]["orderId"]
        producer.publish({"specversion": "1.0", "type": "order.shipped", "source": "raw", "id": order_id,
                          "correlationid": event["correlationid"],
                          "data": {"orderId": order_id, "trackingNumber": "1Z0", "carrier": "UPS"}},
                         routing_key="order.shipped", delivery_mode=2)
        message.ack()

    try:
        return _consume(consume_conn, queue, n, on_message)
    finally:
        consume_conn.release()
        publish_conn.release()
