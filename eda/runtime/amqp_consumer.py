"""Consuming straight from py-amqp on a real broker, with acks batched per channel.

kombu's Consumer wraps every delivery in a kombu Message that eda does not need (eda reads the body
itself and never lets kombu deserialize it), so on the amqp transport a worker registers a
basic.consume callback on its channel directly. Each delivery is handed on as a ``Received``, which
the runtime acks and rejects like a kombu Message.

Acks are held until the I/O loop calls ``Acks.flush`` (once per turn, or sooner when many wait) and
then go out as one ``basic.ack`` with ``multiple`` for the run of settled deliveries at the bottom
of the channel's unsettled tags. A multiple ack covers every lower tag of the channel, so it is
only sent up to the first delivery still being handled; settled deliveries above that one wait for
it (a later multiple ack covers them) until too many wait, and are then acked one by one. An ack
therefore never covers an event whose work is not done.
"""

import uuid
from collections import deque


class Acks:
    """One channel's deliveries not yet acked or rejected (tags in delivery order) and its held acks."""

    def __init__(self, channel, flush_at: int, before_flush=None):
        self.channel = channel
        self.before_flush = before_flush  # e.g. commit the processed-event record before its acks
        self.flush_at = max(1, flush_at)
        self.unsettled = deque()  # every delivered tag not yet acked or rejected, ascending
        self.done = set()  # tags whose work is done: their ack is held until the next flush

    def delivered(self, tag: int) -> None:
        self.unsettled.append(tag)

    def ack(self, tag: int) -> None:
        self.done.add(tag)
        if len(self.done) >= self.flush_at:
            self.flush()  # keep the broker's prefetch window moving within a long turn

    def reject(self, tag: int, requeue: bool) -> None:
        self.done.discard(tag)
        try:
            self.unsettled.remove(tag)
        except ValueError:
            pass
        self.channel.basic_reject(tag, requeue)

    def flush(self, force: bool = False) -> None:
        """Send one multiple ack for the settled run at the bottom; acks above a delivery still being
        handled go one by one once ``flush_at`` of them wait (or with ``force``)."""
        if not self.done:
            return
        if self.before_flush is not None:
            self.before_flush()
        unsettled, done = self.unsettled, self.done
        last = None
        while unsettled and unsettled[0] in done:
            last = unsettled.popleft()
            done.discard(last)
        if last is not None:
            self.channel.basic_ack(last, multiple=True)
        if len(done) < self.flush_at and not force:
            return
        for tag in sorted(done):  # done, but a lower delivery is still being handled
            self.channel.basic_ack(tag)
            try:
                unsettled.remove(tag)
            except ValueError:
                pass
        done.clear()


class Received:
    """A delivery as the runtime uses it: body, properties, headers, delivery info, ack and reject."""

    __slots__ = ("body", "properties", "headers", "delivery_info", "delivery_tag", "undecodable", "_acks")

    def __init__(self, message, acks: Acks):
        self.body = message.body
        self.properties = message.properties
        self.headers = message.properties.get("application_headers") or {}
        # Why its properties were left out, where py-amqp could not decode them (see eda.frames).
        self.undecodable = getattr(message, "undecodable", None)
        self.delivery_info = message.delivery_info
        self.delivery_tag = message.delivery_tag
        self._acks = acks

    @property
    def content_type(self):
        return self.properties.get("content_type")

    @property
    def redelivered(self) -> bool:
        return bool(self.delivery_info.get("redelivered"))

    def ack(self) -> None:
        self._acks.ack(self.delivery_tag)

    def reject(self, requeue: bool = False) -> None:
        self._acks.reject(self.delivery_tag, requeue)

    def requeue(self) -> None:
        self.reject(requeue=True)


class AmqpConsumer:
    """basic.consume on one queue of a py-amqp channel; ``on_message`` gets a ``Received``."""

    def __init__(self, channel, queue: str, prefetch: int, tag_prefix: str, on_message, before_ack=None):
        self.channel = channel
        self.channel.auto_decode = False  # bodies stay bytes: eda decodes UTF-8 JSON itself
        self.queue = queue
        self.prefetch = prefetch
        self.tag_prefix = tag_prefix
        self.on_message = on_message
        self.acks = Acks(channel, flush_at=prefetch // 4, before_flush=before_ack)
        self.tag = None

    def consume(self) -> None:
        self.channel.basic_qos(0, self.prefetch, False)
        self.tag = self.channel.basic_consume(self.queue, consumer_tag=f"{self.tag_prefix}{uuid.uuid4()}",
                                              callback=self._deliver)

    def _deliver(self, message) -> None:
        self.acks.delivered(message.delivery_tag)
        self.on_message(Received(message, self.acks))

    def cancel(self) -> None:
        if self.tag is not None:
            tag, self.tag = self.tag, None
            self.acks.flush(force=True)
            self.channel.basic_cancel(tag)
