"""An ordered worker's consumption: every partition queue on a channel of its own, one event at a time.

A worker with ``ordered_by`` gets its events through partition queues (``eda.topology``): a
consistent-hash exchange sends each key's events to one partition, and each partition has a single
active consumer across the worker's instances. Here, within a partition, the next event starts only
once the one before it is settled (acked, or dead-lettered); the worker's concurrency is used across
partitions. A failing event is retried in place: it stays unacked at the head of its partition, which
waits for the delay and runs the handler again; once its attempts are spent it is dead-lettered, and
the partition goes on. Stopping never cancels a partition's consumer (the broker would hand the
partition to a standby while this instance still holds earlier events): the events not started stay
unacked and return to the head of their partitions when the connection closes.
"""

import logging
from collections import deque

from eda import names
from eda.contracts import registry
from eda.errors import DefinitionError
from eda.runtime.amqp_consumer import AmqpConsumer
from eda.runtime.consumer import Delivery, WorkerConsumer

log = logging.getLogger("eda.worker")

# Deliveries held per partition: one. The broker then sends a partition's next event only once it has
# taken the ack of the one before, so a crash repeats at most the last event of a key, never an earlier
# one (with more held, acks written but lost with the process would send several back). The cost is a
# round trip per event within a partition; the partitions run side by side.
MAX_PREFETCH = 1


def check_ordered(worker_class) -> None:
    """An ordered worker's contracts must each name its ``ordered_by`` field as their key: the key is
    what publishers put in the header the partitions are chosen by. A worker ordered by the flow
    (``names.FLOW``) needs nothing of its contracts: every event carries a correlation id."""
    field = worker_class.ordered_by
    if not isinstance(field, str) or not field:
        raise DefinitionError(f"worker {worker_class.name!r}: ordered_by must name a field of the event's data, "
                              f"or be eda.FLOW")
    if field == names.FLOW:
        return
    for event_type in worker_class.event_types():
        contract = registry.get(event_type)
        if contract.key != field:
            now = f"names key={contract.key!r}" if contract.key else "names no key"
            raise DefinitionError(
                f"worker {worker_class.name!r} is ordered by {field!r}, but the contract of {event_type} {now}: "
                f"declare it with @contract({event_type!r}, ..., key={field!r}) so that publishers set the "
                f"partition key")


class Partition:
    """One partition queue as this instance consumes it: its deliveries in order, and the one running
    or waiting for its retry (``current``)."""

    __slots__ = ("queue", "consumer", "waiting", "current", "attempts", "due", "scheduled", "unchecked")

    def __init__(self, queue: str, consumer: AmqpConsumer):
        self.queue, self.consumer = queue, consumer
        self.waiting = deque()  # delivered, not started, in queue order
        self.current = None  # the delivery being handled, or held for its next attempt
        self.attempts = 0  # attempts of ``current`` retried in place
        self.due = None  # monotonic time of ``current``'s next attempt, while it is held
        self.scheduled = False  # held for an attempt of the retry schedule, not a pause (circuit open)
        self.unchecked = False  # ``current`` is held before it started (its record unread, or its move refused)

    def settled(self) -> None:
        self.current, self.attempts, self.due, self.scheduled, self.unchecked = None, 0, None, False, False


class PartitionedConsumer(WorkerConsumer):
    """``WorkerConsumer`` for a worker with ``ordered_by``: one channel per partition, in order within each."""

    ordered = True

    def __init__(self, worker, runner):
        check_ordered(type(worker))
        super().__init__(worker, runner)
        self.partitions: list[Partition] = []
        self._by_tag: dict[str, Partition] = {}
        self._turn = 0  # which partition goes first in ``pump``: each takes its turn

    def start(self, connection, topology, session) -> None:
        """Declare the partitions and consume each on a channel of its own (acks sent at once)."""
        self.session = session
        self.in_flight = 0
        self.starting = []  # admitted in the lost session's last turn: the broker redelivers them
        self.paused_until = None
        channel = connection.channel()
        queues = topology.declare_ordered(channel, self.worker.name, self.accepted, self.worker.ordered_by)
        channel.close()
        self.queue_name = names.work_queue(topology.namespace, self.worker.name)  # the DLQ's binding key
        prefetch = max(1, min(MAX_PREFETCH, self.worker.settings.effective_prefetch // max(1, len(queues))))
        self.partitions, self._by_tag = [], {}
        for index, queue in enumerate(queues):
            consumer = AmqpConsumer(connection.channel(), queue, prefetch, f"eda-{self.worker.name}-p{index}-",
                                    self.on_message, before_ack=self.flush_records)
            consumer.acks.flush_at = 1  # an ack goes out before the partition's next event starts
            partition = Partition(queue, consumer)
            consumer.consume()
            self._by_tag[consumer.tag] = partition
            self.partitions.append(partition)
        if self.duplicates is not None:
            self.duplicates.clear()
        if len(queues) > topology.partitions:
            log.warning("partitions left from a larger EDA_PARTITIONS are off the hash ring and consumed until "
                        "deleted: %s", ", ".join(queues[topology.partitions:]), extra={"worker": self.worker.name})
        log.info("consuming partitions", extra={"worker": self.worker.name, "queues": queues,
                                                "prefetch_per_partition": prefetch})

    @property
    def consumed_from(self) -> str:
        """The partition queues, as the "consuming" line names them (the work queue is only a name here)."""
        queues = [p.queue for p in self.partitions]
        return f"{queues[0]}..{queues[-1]}" if len(queues) > 1 else "".join(queues)

    def _partition_of(self, delivery: Delivery) -> Partition | None:
        return self._by_tag.get(delivery.message.delivery_info.get("consumer_tag"))

    def admit(self, delivery: Delivery) -> None:
        """Queue the delivery behind its partition's earlier ones; start it if the partition is free.
        While stopping nothing starts: what waits is given back by the connection's close, in order."""
        partition = self._partition_of(delivery)
        if partition is None:  # from a consumer of a session gone: the broker redelivers it
            return
        partition.waiting.append(delivery)
        self._next(partition)

    def _next(self, partition: Partition) -> None:
        # A loop for inline handlers, which settle within ``_start``: nothing else would wake the I/O
        # loop for the partition's next event once the broker has sent all of them.
        while partition.current is None and partition.waiting and self._may_start():
            partition.current = partition.waiting.popleft()
            self._start(partition.current)

    def _may_start(self) -> bool:
        # Within the window: with handler threads, events beyond the free threads wait in their queue
        # (a thread finishing one takes the next partition's at once); ``_recall`` takes those back.
        return not self.stopped and self.paused_until is None and self.in_flight < self.window

    def retried(self, delivery: Delivery) -> int:
        """Attempts of this delivery retried in place so far."""
        partition = self._partition_of(delivery)
        return partition.attempts if partition is not None and partition.current is delivery else 0

    def retry_in_place(self, delivery: Delivery, delay_ms: int, counted: bool = True) -> None:
        """Hold a failed delivery at the head of its partition and run it again after ``delay_ms``; the
        partition's later events wait. ``counted``: an attempt of the retry schedule (an open circuit
        or a DLQ that would not take the copy is not)."""
        partition = self._partition_of(delivery)
        if partition is None:
            return
        if partition.current is not delivery:  # failed before it started: its record could not be read,
            # or it is no event and the DLQ refused its copy. Held at the head like any retry (a partition
            # holds one delivery at a time: prefetch 1), and taken from the top again when due: its record
            # read again (it may be the copy of an event processed already), or its move tried again.
            partition.current, partition.unchecked = delivery, True
        partition.attempts += 1 if counted else 0
        partition.due = self.clock() + delay_ms / 1000
        partition.scheduled = counted

    def resolved(self, delivery: Delivery, processed: bool) -> None:
        """The delivery is acked or moved: its partition goes on with the next event."""
        super().resolved(delivery, processed)
        partition = self._partition_of(delivery)
        if partition is not None and partition.current is delivery:
            partition.settled()

    def pump(self) -> None:
        """Run held events whose retry is due, then start the next event of each free partition."""
        count = len(self.partitions)
        if not count:
            return
        now = self.clock()
        self._turn = (self._turn + 1) % count
        for i in range(count):
            partition = self.partitions[(self._turn + i) % count]
            if partition.due is not None and partition.due <= now and self._may_start():
                partition.due = None
                if partition.unchecked:  # failed before it started: from the top again
                    delivery, partition.current, partition.unchecked = partition.current, None, False
                    partition.attempts = 0  # a record away, or a DLQ refusing a copy, is not the event's failure
                    if delivery.event is None:  # no event (a poison message whose move failed): failed, moved again
                        self.on_message(delivery.message)
                    else:  # the record's check again, then started (or acked)
                        self.check_and_admit(delivery)
                else:
                    self._start(partition.current)
            self._next(partition)

    def wake_in(self) -> float | None:
        """Seconds until the earliest retry is due (the I/O loop wakes then), or None. None too while
        nothing may start: a finishing handler wakes the loop, and a due retry must not make it spin."""
        if not self._may_start():
            return None
        dues = [p.due for p in self.partitions if p.due is not None]
        return max(0.0, min(dues) - self.clock()) if dues else None

    def pause(self, seconds: float) -> None:
        """Start nothing for a while; the partitions keep their events (a cancel would let a standby
        take a partition while this instance holds earlier events of it)."""
        self.paused_until = self.clock() + seconds
        self._recall()

    def resume_if_due(self) -> bool:
        if self.paused_until is not None and self.clock() >= self.paused_until:
            self.paused_until = None
            return True
        return False

    def stop(self) -> None:
        """Start nothing more; running handlers finish and are acked, the rest goes back on close."""
        self.stopped = True
        self.paused_until = None
        self._recall()

    def _recall(self) -> None:
        """Take back the events handed over but not started (this turn's, and those waiting in the
        handler threads' queue): each goes back to the head of its partition, to start after a pause,
        or to return to the broker, in order, when the connection closes."""
        for delivery in self.take_back():
            partition = self._partition_of(delivery)
            if partition is not None and partition.current is delivery:
                partition.current = None
                partition.waiting.appendleft(delivery)

    def give_back(self) -> None:
        """Nothing is given back one by one: the connection's close returns each partition's events in order."""

    def flush_acks(self, final: bool = False) -> None:
        for partition in self.partitions:
            partition.consumer.acks.flush(force=final)
