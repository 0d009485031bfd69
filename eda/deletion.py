"""Deleting what a namespace's workers declared, saying what was there (``eda topology delete``).

Without RabbitMQ's management API nothing lists queues: each is looked for by the name eda gives it,
by a passive declare on a channel of its own (a name that is not there closes the channel it is asked
on). A worker's queues are its work queue, its dead-letter queue, its retry queues (one per delay of
the topology's ``EDA_RETRY_DELAYS``) and, for an ordered worker, its partition queues ``p0``, ``p1``...
as far as they go, with its consistent-hash exchange. The broker's reply to a queue's delete says how
many messages went with it.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from eda import names
from eda.connection import open_connection
from eda.settings import Settings
from eda.topology import HASH_EXCHANGE_TYPE, Topology

if TYPE_CHECKING:
    from eda.worker import Worker


@dataclass(frozen=True)
class Deleted:
    """One queue or exchange deleted, and the messages a queue held."""

    kind: str  # "queue" or "exchange"
    name: str
    messages: int = 0


class Probe:
    """Passive declares, each on a channel of the probe's own, opened again after a 404 closed it."""

    def __init__(self, connection):
        self.connection = connection
        self.channel = None

    def _ask(self, declare):
        """The broker's answer to ``declare``, or None where the queue or exchange is not there."""
        if self.channel is None:
            self.channel = self.connection.channel()
        try:
            return declare(self.channel) or True
        except Exception:  # 404: not there (the broker closed the channel)
            self.close()
            return None

    def queue(self, name: str) -> bool:
        return self._ask(lambda channel: channel.queue_declare(name, passive=True)) is not None

    def consumers(self, name: str) -> int:
        """How many consumers the queue has (0 where it is not there)."""
        return getattr(self._ask(lambda channel: channel.queue_declare(name, passive=True)), "consumer_count", 0)

    def exchange(self, name: str) -> bool:
        return self._ask(lambda channel: channel.exchange_declare(name, HASH_EXCHANGE_TYPE, passive=True)) is not None

    def close(self) -> None:
        channel, self.channel = self.channel, None
        if channel is not None:
            try:
                channel.close()
            except Exception:  # already closed by a 404
                pass


def worker_queues(topology: Topology, probe: Probe, worker: str) -> list[str]:
    """The queues of ``worker`` that are there: work, dead-letter and retry queues, partitions."""
    found = [name for name in topology.worker_queue_names(worker) if probe.queue(name)]
    index = 0
    while probe.queue(names.partition_queue(topology.namespace, worker, index)):
        found.append(names.partition_queue(topology.namespace, worker, index))
        index += 1
    return found


def consumed(settings: Settings, workers) -> dict[str, int]:
    """The queues of ``workers`` (names) that consumers read from, with how many: running workers,
    which would declare them again at once if they were deleted."""
    connection = open_connection(settings)
    probe = Probe(connection)
    try:
        topology = Topology.from_settings(settings)
        counts = {name: probe.consumers(name) for worker in workers for name in worker_queues(topology, probe, worker)}
        return {name: count for name, count in counts.items() if count}
    finally:
        probe.close()
        connection.release()


def delete(connection, topology: Topology, workers, *, exchanges: bool) -> list[Deleted]:
    """Delete the queues of ``workers`` (names) that are there, an ordered worker's hash exchange, and
    with ``exchanges`` the namespace's events and dead-letter exchanges; return what was deleted."""
    probe = Probe(connection)
    channel = connection.channel()
    deleted = []
    try:
        for worker in workers:
            for name in worker_queues(topology, probe, worker):
                deleted.append(Deleted("queue", name, channel.queue_delete(name) or 0))
            for by_flow in (False, True):
                name = names.partitions_exchange(topology.namespace, worker, by_flow)
                if probe.exchange(name):
                    channel.exchange_delete(name)
                    deleted.append(Deleted("exchange", name))
        for name in (topology.events.name, topology.dlx.name) if exchanges else ():
            if probe.exchange(name):
                channel.exchange_delete(name)
                deleted.append(Deleted("exchange", name))
    finally:
        probe.close()
        channel.close()
    return deleted


def delete_topology(settings: Settings, *workers: "type[Worker] | str", exchanges: bool = True) -> list[Deleted]:
    """Delete the queues of ``workers`` (Worker classes or names): work, retry and dead-letter queues, an
    ordered worker's partitions as far as they go; and, unless ``exchanges`` is False, the namespace's
    exchanges. For a namespace made for a while (a demo, a test): what is in those queues is gone. What
    is not there is no error. Returns what was deleted, as ``eda topology delete`` says it."""
    connection = open_connection(settings)
    try:
        named = [worker if isinstance(worker, str) else worker.name for worker in workers]
        return delete(connection, Topology.from_settings(settings), named, exchanges=exchanges)
    finally:
        connection.release()


def describe(deleted: Deleted) -> str:
    """One line of ``eda topology delete``: what was deleted, and the messages that went with a queue."""
    if deleted.kind == "queue" and deleted.messages:
        return f"deleted queue {deleted.name}, and the {_count(deleted.messages, 'message')} it held"
    return f"deleted {deleted.kind} {deleted.name}"


def summary(deleted: list[Deleted], namespace: str) -> str:
    """The last line of ``eda topology delete``: how many queues (and the messages in them) and exchanges."""
    queues = [d for d in deleted if d.kind == "queue"]
    exchanges = len(deleted) - len(queues)
    messages = sum(d.messages for d in queues)
    parts = [f"{_count(len(queues), 'queue')} ({_count(messages, 'message')} in {'them' if len(queues) > 1 else 'it'})"] \
        if queues else []
    parts += [_count(exchanges, "exchange")] if exchanges else []
    return f"deleted {' and '.join(parts)} of namespace {namespace}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' if number != 1 else ''}"
