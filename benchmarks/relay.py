"""The raw kombu baseline of the latency benchmark: one hop of the order flow, as a plain kombu process.

    python -m benchmarks.relay NAMESPACE ROUTING_KEY NEXT_KEY

consumes ``<namespace>.relay.<ROUTING_KEY>`` (declared by the benchmark), and for each event
publishes it again as NEXT_KEY with a confirm, then acks: no validation, no state. Stops on SIGTERM.
"""

import signal
import socket
import sys

import kombu
from kombu.utils import json
from kombu import Exchange, Queue

from benchmarks.bench import PREFETCH, broker_url


def main(namespace: str, key: str, next_key: str) -> None:
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    consume_conn = kombu.Connection(broker_url())
    publish_conn = kombu.Connection(broker_url(), transport_options={"confirm_publish": True})
    exchange = Exchange(f"{namespace}.events", type="topic", durable=True)
    producer = kombu.Producer(publish_conn.channel(), exchange=exchange, serializer="json")

    def on_message(message):
        event = json.loads(message.body)  # kombu's JSON; the content type is CloudEvents'
        event["type"] = next_key
        producer.publish(event, routing_key=next_key, delivery_mode=2)
        message.ack()

    consumer = kombu.Consumer(consume_conn.channel(), queues=[Queue(f"{namespace}.relay.{key}", no_declare=True)],
                              on_message=on_message, prefetch_count=PREFETCH, accept=["json"])
    consumer.consume()
    while not stopping:
        try:
            consume_conn.drain_events(timeout=0.5)
        except socket.timeout:
            pass
    consume_conn.release()
    publish_conn.release()


if __name__ == "__main__":
    main(*sys.argv[1:4])
