"""The exchanges and queues of the bus, declared from the names in ``eda.names``.

Queue arguments are derived here and nowhere else: RabbitMQ refuses a redeclare with other arguments.
"""

import re

from amqp.exceptions import PreconditionFailed
from kombu import Exchange, Queue, binding

from eda import names
from eda.errors import PluginMissing, QueueMismatch
from eda.settings import SPECS, Settings

CLASSIC, QUORUM = "classic", "quorum"
DEFAULT_DELIVERY_LIMIT = SPECS["delivery_limit"].default


def queue_arguments(queue_type: str, arguments: dict | None = None, *, delivery_limit: int | None = None) -> dict:
    """``arguments`` made those of a queue of ``queue_type``: every queue eda declares (work, retry,
    dead-letter and partition queues) gets its type here, so under quorum none is left classic (a
    cluster that loses the node of a classic queue cannot declare it). A quorum queue that dead-letters
    does it at least once: the event stays until the target queue confirmed it, so a node failure loses
    no retry or crash-looping event (RabbitMQ 3.10+ needs reject-publish overflow for that). A consumed
    quorum queue also takes the delivery limit."""
    arguments = dict(arguments or {})
    if queue_type == QUORUM:
        arguments["x-queue-type"] = QUORUM
        if "x-dead-letter-exchange" in arguments:
            arguments.update({"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})
        if delivery_limit is not None:
            arguments["x-delivery-limit"] = delivery_limit
    return arguments


def work_queue_arguments(namespace: str, worker: str, queue_type: str = CLASSIC,
                         delivery_limit: int = DEFAULT_DELIVERY_LIMIT) -> dict:
    """The work queue's arguments: rejects go to the worker's DLQ; a quorum queue also dead-letters an
    event delivered ``delivery_limit`` times (a crash loop of one poison event) to the same DLQ."""
    return queue_arguments(queue_type, {
        "x-dead-letter-exchange": names.dead_letter_exchange(namespace),
        "x-dead-letter-routing-key": names.work_queue(namespace, worker),
    }, delivery_limit=delivery_limit)


def partition_queue_arguments(namespace: str, worker: str, queue_type: str = CLASSIC,
                              delivery_limit: int = DEFAULT_DELIVERY_LIMIT) -> dict:
    """A partition queue's arguments: the work queue's, and a single active consumer. Every instance of
    an ordered worker consumes every partition; the broker delivers to one at a time, fails over to
    another when it goes away, and so keeps one partition's events in order across instances."""
    return {**work_queue_arguments(namespace, worker, queue_type, delivery_limit), "x-single-active-consumer": True}


HASH_EXCHANGE_TYPE = "x-consistent-hash"  # RabbitMQ's plugin rabbitmq_consistent_hash_exchange
HASH_PLUGIN = "rabbitmq_consistent_hash_exchange"
PARTITION_WEIGHT = "1"  # a partition's binding key: its share of the hash ring (all partitions equal)
DEFAULT_PARTITIONS = SPECS["partitions"].default


def mismatch_message(queue: str, broker_text: str) -> str:
    """One line for a PRECONDITION_FAILED redeclare: which argument differs, and how to fix it."""
    match = re.search(r"inequivalent arg '([^']+)'.*: received (.+) but current is (.+)$", broker_text)
    option = "--queue-type (EDA_QUEUE_TYPE)"
    if match:
        arg, asked, current = (match.group(1), *(_value(v) for v in match.group(2, 3)))
        difference = f"{arg} is {current} there, {asked} here"
        if arg == "x-delivery-limit":
            option = "--delivery-limit (EDA_DELIVERY_LIMIT)"
        if arg in ("x-dead-letter-strategy", "x-overflow"):  # a quorum queue of an eda before at-least-once
            return (f"queue {queue!r} exists with other arguments ({difference}): an earlier eda declared it, "
                    f"whose dead-lettering a node failure can lose; let it drain, then delete it and eda "
                    f"declares it again")
    else:
        difference = broker_text.split(" - ", 1)[-1]
    return (f"queue {queue!r} exists with other arguments ({difference}); delete it (its events go with it) "
            f"or use the same {option} it was declared with")


def _value(text: str) -> str:
    """``the value 'quorum' of type 'longstr'`` or ``'quorum'`` -> ``quorum``."""
    text = re.sub(r"^the value (.*) of type '\w+'$", r"\1", text.strip())
    return text.strip("'")


def declare(queue: Queue, channel) -> None:
    """Declare ``queue``; a queue that exists with other arguments is a one-line error saying how to fix it."""
    try:
        queue.declare(channel=channel)
    except PreconditionFailed as exc:
        raise QueueMismatch(mismatch_message(queue.name, str(getattr(exc, "reply_text", "") or exc))) from None


class Topology:
    """What one namespace declares: the events exchange, the dead-letter exchange and worker queues."""

    def __init__(self, namespace: str, retry_delays_ms: tuple[int, ...] = (), *, queue_type: str = CLASSIC,
                 delivery_limit: int = DEFAULT_DELIVERY_LIMIT, partitions: int = DEFAULT_PARTITIONS):
        self.namespace = namespace
        self.retry_delays_ms = retry_delays_ms
        self.queue_type = queue_type.lower()
        self.delivery_limit = delivery_limit
        self.partitions = partitions  # of each ordered worker
        self.events = Exchange(names.events_exchange(namespace), type="topic", durable=True)
        self.dlx = Exchange(names.dead_letter_exchange(namespace), type="direct", durable=True)

    @classmethod
    def from_settings(cls, settings) -> "Topology":
        return cls(settings.namespace, settings.retry_delays_ms, queue_type=settings.queue_type,
                   delivery_limit=settings.delivery_limit, partitions=settings.partitions)

    def work_queue(self, worker: str, event_types) -> Queue:
        """The worker's queue, bound to each type it handles; rejects go to its DLQ as a safety net.
        Durable and not exclusive, as a quorum queue must be."""
        return Queue(
            names.work_queue(self.namespace, worker),
            bindings=[binding(self.events, routing_key=t) for t in sorted(event_types)],
            durable=True,
            exclusive=False,
            auto_delete=False,
            queue_arguments=work_queue_arguments(self.namespace, worker, self.queue_type, self.delivery_limit),
        )

    def dead_letter_queue(self, worker: str) -> Queue:
        """Bound to the DLX with the work queue's name as key, so each worker's failures stay apart."""
        return Queue(names.dead_letter_queue(self.namespace, worker), exchange=self.dlx,
                     routing_key=names.work_queue(self.namespace, worker), durable=True,
                     queue_arguments=queue_arguments(self.queue_type) or None)

    def retry_queues(self, worker: str) -> dict[int, Queue]:
        """One TTL queue per delay; on expiry the broker dead-letters the event back to the worker's
        own queue through the default exchange, so a retry reaches only the worker that failed."""
        work = names.work_queue(self.namespace, worker)
        return {
            delay: Queue(
                names.retry_queue(self.namespace, worker, delay),
                durable=True,
                queue_arguments=queue_arguments(self.queue_type, {
                    "x-message-ttl": delay,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": work,
                }),
            )
            for delay in sorted(set(self.retry_delays_ms))
        }

    def declare_exchanges(self, channel) -> None:
        for exchange in (self.events, self.dlx):
            try:
                exchange.declare(channel=channel)
            except PreconditionFailed as exc:
                text = str(getattr(exc, "reply_text", "") or exc).split(" - ", 1)[-1]
                raise QueueMismatch(f"exchange {exchange.name!r} exists with other properties ({text}); eda needs "
                                    f"a durable {exchange.type} exchange: delete it or use another namespace") from None

    def declare_worker(self, channel, worker: str, event_types) -> Queue:
        """Declare everything one worker needs (idempotent) and return its work queue."""
        self.declare_exchanges(channel)
        declare(self.dead_letter_queue(worker), channel)
        for queue in self.retry_queues(worker).values():
            declare(queue, channel)
        queue = self.work_queue(worker, event_types)
        declare(queue, channel)
        return queue

    def worker_queue_names(self, worker: str) -> list[str]:
        """Every queue name ``declare_worker`` creates for ``worker`` (for status, clean-up and tests)."""
        return [names.work_queue(self.namespace, worker), names.dead_letter_queue(self.namespace, worker),
                *(q.name for q in self.retry_queues(worker).values())]

    def delete_worker(self, channel, worker: str) -> None:
        for name in self.worker_queue_names(worker):
            channel.queue_delete(name)

    def delete_exchanges(self, channel) -> None:
        channel.exchange_delete(self.events.name)
        channel.exchange_delete(self.dlx.name)

    # An ordered worker (``ordered_by``): partitions instead of a work queue and retry queues.

    def partitions_exchange(self, worker: str, ordered_by: str | None = None) -> Exchange:
        """The worker's consistent-hash exchange, hashing the partition key header (or, for a worker
        ordered by ``names.FLOW``, the correlation id property); bound to the events exchange with the
        worker's types, it sends each key's (or flow's) events to one partition."""
        by_flow = ordered_by == names.FLOW
        hashed = {"hash-property": names.FLOW_PROPERTY} if by_flow else {"hash-header": names.PARTITION_KEY_HEADER}
        return Exchange(names.partitions_exchange(self.namespace, worker, by_flow), type=HASH_EXCHANGE_TYPE,
                        durable=True, arguments=hashed)

    def partition_queue(self, worker: str, index: int, ordered_by: str | None = None) -> Queue:
        return Queue(names.partition_queue(self.namespace, worker, index),
                     exchange=self.partitions_exchange(worker, ordered_by),
                     routing_key=PARTITION_WEIGHT, durable=True, exclusive=False, auto_delete=False,
                     queue_arguments=partition_queue_arguments(self.namespace, worker, self.queue_type,
                                                               self.delivery_limit))

    def declare_ordered(self, channel, worker: str, event_types, ordered_by: str | None = None) -> list[str]:
        """Declare an ordered worker's exchanges, partitions and DLQ (idempotent); return the partitions
        to consume: ``self.partitions`` of them, then any left from a larger count, taken off the hash
        ring (they get no new events) and consumed until someone deletes them. ``ordered_by``: the
        worker's, which says what its exchange hashes (a key header, or the flow's correlation id)."""
        self.declare_exchanges(channel)
        declare(self.dead_letter_queue(worker), channel)
        exchange = self.partitions_exchange(worker, ordered_by)
        try:
            exchange.declare(channel=channel)
        except Exception as exc:
            # "unknown exchange type" where the plugin never ran, "invalid exchange type" once disabled
            if re.search(r"(unknown|invalid) exchange type", str(getattr(exc, "reply_text", "") or exc)):
                raise PluginMissing(f"worker {worker!r} is ordered (ordered_by) and needs RabbitMQ's consistent-hash "
                                    f"exchange: enable it with `rabbitmq-plugins enable {HASH_PLUGIN}`") from None
            raise
        other = names.partitions_exchange(self.namespace, worker, ordered_by != names.FLOW)
        if self._exists(channel, other):  # ordered by a key before, by the flow now (or the other way round)
            raise QueueMismatch(f"worker {worker!r} was ordered {'by a key' if ordered_by == names.FLOW else 'by the flow'} "
                                f"before: its exchange {other!r} still sends events to its partitions; once "
                                f"no instance of the old version runs, delete it (the partitions keep their "
                                f"events) and start the worker again")
        for event_type in sorted(event_types):
            channel.exchange_bind(destination=exchange.name, source=self.events.name, routing_key=event_type)
        queues = [self.partition_queue(worker, i, ordered_by) for i in range(self.partitions)]
        for queue in queues:
            declare(queue, channel)
        leftovers = self._leftover_partitions(channel, worker)
        for name in leftovers:
            channel.queue_unbind(name, exchange.name, routing_key=PARTITION_WEIGHT)
        return [q.name for q in queues] + leftovers

    @staticmethod
    def _exists(channel, exchange: str) -> bool:
        """Whether ``exchange`` exists, by a passive declare on a channel of its own (a 404 closes it)."""
        probe = channel.connection.channel()
        try:
            probe.exchange_declare(exchange, HASH_EXCHANGE_TYPE, passive=True)
            return True
        except Exception:  # 404: there is none
            return False
        finally:
            try:
                probe.close()
            except Exception:  # already closed by the 404
                pass

    def _leftover_partitions(self, channel, worker: str) -> list[str]:
        """Partition queues past ``self.partitions`` (the worker ran with more), found by passive
        declares on a channel of their own: a queue that does not exist closes the channel it is asked on."""
        found = []
        probe = channel.connection.channel()
        try:
            while True:
                name = names.partition_queue(self.namespace, worker, self.partitions + len(found))
                try:
                    probe.queue_declare(name, passive=True)
                except Exception:  # 404: no more of them (the broker closed the probe channel)
                    return found
                found.append(name)
        finally:
            try:
                probe.close()
            except Exception:  # already closed by the 404
                pass

    def ordered_queue_names(self, worker: str, partitions: int | None = None) -> list[str]:
        """The partition queues and DLQ of an ordered worker (for status, clean-up and tests)."""
        count = self.partitions if partitions is None else partitions
        return [*(names.partition_queue(self.namespace, worker, i) for i in range(count)),
                names.dead_letter_queue(self.namespace, worker)]

    def delete_ordered(self, channel, worker: str, partitions: int | None = None) -> None:
        for name in self.ordered_queue_names(worker, partitions):
            channel.queue_delete(name)
        for by_flow in (False, True):
            channel.exchange_delete(names.partitions_exchange(self.namespace, worker, by_flow))
