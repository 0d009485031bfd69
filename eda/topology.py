"""The exchanges and queues of the bus, declared from the names in ``eda.names``.

Queue arguments are derived here and nowhere else: RabbitMQ refuses a redeclare with other arguments.
"""

from kombu import Exchange, Queue, binding

from eda import names


class Topology:
    """What one namespace declares: the events exchange, the dead-letter exchange and worker queues."""

    def __init__(self, namespace: str, retry_delays_ms: tuple[int, ...] = ()):
        self.namespace = namespace
        self.retry_delays_ms = retry_delays_ms
        self.events = Exchange(names.events_exchange(namespace), type="topic", durable=True)
        self.dlx = Exchange(names.dead_letter_exchange(namespace), type="direct", durable=True)

    def work_queue(self, worker: str, event_types) -> Queue:
        """The worker's queue, bound to each type it handles; rejects go to its DLQ as a safety net."""
        name = names.work_queue(self.namespace, worker)
        return Queue(
            name,
            bindings=[binding(self.events, routing_key=t) for t in sorted(event_types)],
            durable=True,
            queue_arguments={
                "x-dead-letter-exchange": self.dlx.name,
                "x-dead-letter-routing-key": name,
            },
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
        self.events.declare(channel=channel)
        self.dlx.declare(channel=channel)

    def declare_worker(self, channel, worker: str, event_types) -> Queue:
        """Declare everything one worker needs (idempotent) and return its work queue."""
        self.declare_exchanges(channel)
        self.dead_letter_queue(worker).declare(channel=channel)
        for queue in self.retry_queues(worker).values():
            queue.declare(channel=channel)
        queue = self.work_queue(worker, event_types)
        queue.declare(channel=channel)
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
