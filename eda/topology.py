"""The exchanges and queues of the bus, declared from the names in ``eda.names``.

Queue arguments are derived here and nowhere else: RabbitMQ refuses a redeclare with other arguments.
"""

import re

from amqp.exceptions import PreconditionFailed
from kombu import Exchange, Queue, binding

from eda import names
from eda.errors import QueueMismatch
from eda.settings import SPECS

CLASSIC, QUORUM = "classic", "quorum"
DEFAULT_DELIVERY_LIMIT = SPECS["delivery_limit"].default


def work_queue_arguments(namespace: str, worker: str, queue_type: str = CLASSIC,
                         delivery_limit: int = DEFAULT_DELIVERY_LIMIT) -> dict:
    """The work queue's arguments: rejects go to the worker's DLQ; a quorum queue also dead-letters an
    event delivered ``delivery_limit`` times (a crash loop of one poison event) to the same DLQ."""
    arguments = {
        "x-dead-letter-exchange": names.dead_letter_exchange(namespace),
        "x-dead-letter-routing-key": names.work_queue(namespace, worker),
    }
    if queue_type == QUORUM:
        arguments.update({"x-queue-type": QUORUM, "x-delivery-limit": delivery_limit})
    return arguments


def mismatch_message(queue: str, broker_text: str) -> str:
    """One line for a PRECONDITION_FAILED redeclare: which argument differs, and how to fix it."""
    match = re.search(r"inequivalent arg '([^']+)'.*: received (.+) but current is (.+)$", broker_text)
    option = "--queue-type (EDA_QUEUE_TYPE)"
    if match:
        arg, asked, current = (match.group(1), *(_value(v) for v in match.group(2, 3)))
        difference = f"{arg} is {current} there, {asked} here"
        if arg == "x-delivery-limit":
            option = "--delivery-limit (EDA_DELIVERY_LIMIT)"
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
                 delivery_limit: int = DEFAULT_DELIVERY_LIMIT):
        self.namespace = namespace
        self.retry_delays_ms = retry_delays_ms
        self.queue_type = queue_type.lower()
        self.delivery_limit = delivery_limit
        self.events = Exchange(names.events_exchange(namespace), type="topic", durable=True)
        self.dlx = Exchange(names.dead_letter_exchange(namespace), type="direct", durable=True)

    @classmethod
    def from_settings(cls, settings) -> "Topology":
        return cls(settings.namespace, settings.retry_delays_ms, queue_type=settings.queue_type,
                   delivery_limit=settings.delivery_limit)

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
                     routing_key=names.work_queue(self.namespace, worker), durable=True)

    def retry_queues(self, worker: str) -> dict[int, Queue]:
        """One TTL queue per delay; on expiry the broker dead-letters the event back to the worker's
        own queue through the default exchange, so a retry reaches only the worker that failed."""
        work = names.work_queue(self.namespace, worker)
        return {
            delay: Queue(
                names.retry_queue(self.namespace, worker, delay),
                durable=True,
                queue_arguments={
                    "x-message-ttl": delay,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": work,
                },
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
