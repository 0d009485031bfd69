"""Dead-letter queue tooling: each worker's dead events with their reasons, replayed or purged.

Events are taken with ``basic_get`` and not acked: looking at them gives them back, and a replay acks
each one only after its copy on the work queue is confirmed, so a crash at any point leaves a
duplicate, never a loss.
"""

import json
import sys
from contextlib import contextmanager, nullcontext
from datetime import datetime

import click

from eda import names, replies
from eda.cli_support import columns
from eda.connection import open_connection
from eda.contracts.binary import claimed_identity
from eda.errors import NotFound, PublishError
from eda.publishing.publisher import Publisher
from eda.runtime import failures
from eda.runtime.settlement import copy_properties

PROGRESS_MIN = 100  # a replay moving fewer events than this shows no progress bar
BROKER_DEATH_HEADERS = ("x-death", "x-first-death-", "x-last-death-", "x-delivery-count")


def replay_headers(headers) -> dict:
    """A replayed copy's headers: eda's failure record and attempt count gone, and the broker's own
    dead-letter history too (a quorum queue's delivery limit leaves only that). Where the event was
    first published stays (from ``x-death`` when the broker dead-lettered it): the worker checks the
    event's type against that routing key. A request's ``eda-expires-at`` goes too: whoever replays it
    wants it handled, though its requester is long gone (its reply finds nobody)."""
    headers = headers or {}
    replayed = {k: v for k, v in failures.cleaned_headers(headers).items()
                if not k.startswith(BROKER_DEATH_HEADERS) and k != replies.EXPIRES_AT}
    if failures.ORIGINAL_ROUTING_KEY not in replayed:
        death = _first_death(headers)
        keys = death.get("routing-keys") if death else None
        if isinstance(keys, list) and keys and isinstance(keys[0], str) and death.get("exchange"):
            replayed[failures.ORIGINAL_EXCHANGE] = death["exchange"]
            replayed[failures.ORIGINAL_ROUTING_KEY] = keys[0]
    return replayed


def _first_death(headers) -> dict | None:
    """The broker's record of the first time the message was dead-lettered, if it is well formed."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[-1], dict):
        return deaths[-1]
    return None


def dead_event(message) -> dict:
    """What a dead-lettered message says: which event, and why, when and after how many retries it died.

    A copy dead-lettered by the broker itself (a reject, a quorum queue's delivery limit) carries no
    ``eda-*`` reason; its ``x-death`` reason is shown instead."""
    headers = message.headers or {}
    event_id, event_type = claimed_identity(message.body, message.properties, headers)
    exception_type, exception_message = headers.get("eda-exception-type"), headers.get("eda-exception-message")
    failed_at = headers.get("eda-failed-at")
    if exception_type is None and headers.get("x-death"):
        death = headers["x-death"][0]
        exception_type = "dead-lettered by the broker"
        exception_message = f"{death.get('reason')} in {death.get('queue')}"
        when = death.get("time")  # py-amqp decodes the AMQP timestamp as a naive UTC datetime
        failed_at = failed_at or (f"{when.isoformat()}Z" if isinstance(when, datetime) else None)
    return {
        "id": event_id,
        "type": event_type,
        "correlation_id": message.properties.get("correlation_id"),
        "exception_type": exception_type,
        "exception_message": exception_message,
        "category": headers.get(failures.CATEGORY),  # contract, permanent, programming or transient
        "failed_at": failed_at,
        "retry_count": failures.retry_count(headers),
        "worker": headers.get("eda-worker"),
        "original_routing_key": headers.get(failures.ORIGINAL_ROUTING_KEY),
        "stacktrace": headers.get("eda-exception-stacktrace"),
        "body": message.body.decode("utf-8", "replace") if isinstance(message.body, bytes) else message.body,
    }


def describe(dead: dict) -> str:
    """Two lines for people: the event, then the reason it is dead (after its failure's category)."""
    when = f"failed at {dead['failed_at']}" if dead["failed_at"] else "failed"
    reason = ": ".join(str(x) for x in (dead["exception_type"], dead["exception_message"]) if x) or "unknown"
    if dead.get("category"):
        reason = f"[{dead['category']}] {reason}"
    return (f"{dead['id'] or '-'}  {dead['type'] or '-'}  {when} after {dead['retry_count']} retries\n"
            f"    {reason}")


def count(n: int, what: str = "event") -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def as_json(dead: dict) -> str:
    return json.dumps(dead, separators=(",", ":"), default=str)


class DeadLetters:
    """One namespace's DLQs, on a connection the caller owns."""

    def __init__(self, connection, namespace: str, tracing=None):
        self.connection = connection
        self.namespace = namespace
        self.tracing = tracing  # an eda.tracing.Tracing where tracing is on: a span per replayed event

    def depth(self, queue: str) -> int | None:
        """Events ready in ``queue``, or None when it is not declared (the 404 closes only this channel)."""
        with self.connection.channel() as channel:
            try:
                return channel.queue_declare(queue, passive=True).message_count
            except self.connection.channel_errors:
                return None

    def depths(self, workers) -> list[tuple[str, str, int | None]]:
        """(worker, DLQ name, depth or None) for each worker."""
        return [(w, q, self.depth(q)) for w in workers for q in [names.dead_letter_queue(self.namespace, w)]]

    def _require(self, queue: str, hint: str) -> int:
        depth = self.depth(queue)
        if depth is None:
            raise NotFound(f"queue {queue!r} is not declared in namespace {self.namespace!r}; {hint}")
        return depth

    def _take(self, channel, queue: str, available: int, limit=None, event_id=None):
        """Yield, unacked, up to ``limit`` of the ``available`` events, or those with ``event_id``; the
        others stay unacked until the channel closes, which gives them back in place.

        Counting from the depth seen first keeps a replay from taking back what fails again meanwhile."""
        taken = 0
        for _ in range(available):
            if limit is not None and taken >= limit:
                return
            message = channel.basic_get(queue, no_ack=False)
            if message is None:
                break
            if event_id is None or claimed_identity(message.body, message.properties, message.headers)[0] == event_id:
                taken += 1
                yield message
        if event_id is not None and not taken:
            raise NotFound(f"no event with id {event_id!r} in {queue!r}")

    def show(self, worker: str, limit=None) -> tuple[list[dict], int]:
        """The first ``limit`` dead events of ``worker`` and the DLQ's depth; every event stays in place."""
        queue = names.dead_letter_queue(self.namespace, worker)
        available = self._require(queue, "nothing was dead-lettered there")
        with self.connection.channel() as channel:  # closing it gives back every event taken
            return [dead_event(m) for m in self._take(channel, queue, available, limit)], available

    def _queues(self, worker: str) -> tuple[str, str, int]:
        """The worker's DLQ, its work queue (both must exist) and the DLQ's depth."""
        dlq, work = names.dead_letter_queue(self.namespace, worker), names.work_queue(self.namespace, worker)
        available = self._require(dlq, "nothing was dead-lettered there")
        if self.depth(work) is None and self._partitions_exchange(worker):
            return dlq, None, available  # an ordered worker: replayed through its partitions exchange
        self._require(work, f"start `eda worker {worker}` or run `eda topology declare` first")
        return dlq, work, available

    def _partitions_exchange(self, worker: str) -> str | None:
        """An ordered worker's partitions exchange (by key, or by flow), or None where it has none."""
        return next((x for x in (names.partitions_exchange(self.namespace, worker, by_flow) for by_flow in (False, True))
                     if self._exchange_exists(x)), None)

    def _exchange_exists(self, exchange: str) -> bool:
        with self.connection.channel() as channel:
            try:
                channel.exchange_declare(exchange, "x-consistent-hash", passive=True)
                return True
            except self.connection.channel_errors:
                return False

    def preview(self, worker: str, *, limit=None, event_id=None) -> list[dict]:
        """What ``replay`` with the same arguments would move; nothing moves."""
        dlq, _, available = self._queues(worker)
        with self.connection.channel() as channel:
            return [dead_event(m) for m in self._take(channel, dlq, available, limit, event_id)]

    def replay(self, worker: str, *, limit=None, event_id=None, progress=False) -> int:
        """Move dead events back to the worker's own queue, cleaned of their failure record; return how many.

        Published to the default exchange with the work queue's name as routing key, so only this
        worker gets them; each DLQ message is acked once its copy is confirmed. An ordered worker's
        go through its partitions exchange, which sends each to its key's partition (at the back)."""
        dlq, work, available = self._queues(worker)
        total = 1 if event_id else min(available, limit or available)
        exchange = "" if work is not None else self._partitions_exchange(worker)
        with self.connection.channel() as channel:  # whatever is not acked goes back to the DLQ on close
            taken = self._take(channel, dlq, available, limit, event_id)
            moved, errors = self._move(channel, taken, work, total if progress and total >= PROGRESS_MIN else 0,
                                       exchange=exchange)
        if errors:
            raise PublishError(f"replayed {count(moved)}; the others stay in {dlq}: {errors[0]}")
        return moved

    def _move(self, channel, messages, queue: str | None, progress_length: int, exchange: str = "") -> tuple[int, list]:
        """Publish each message to ``queue`` with confirms, acking it on ``channel`` once confirmed; with
        an ``exchange`` (an ordered worker's partitions), to it with the event's type as routing key."""
        publisher = Publisher(self.connection)
        moved = 0
        bar = click.progressbar(length=progress_length, label="replaying", file=sys.stderr) if progress_length \
            else nullcontext()

        def send(message, settled):
            if self.tracing is not None:  # the body keeps its traceparent: a replay span joins the trace
                settled = self.tracing.replaying(message, queue or exchange, settled)
            headers = replay_headers(message.headers)
            # The worker checks the routing key against the event's type: the original one.
            routing_key = queue if not exchange else \
                headers.get(failures.ORIGINAL_ROUTING_KEY) or message.properties.get("type") or ""
            publisher.send(exchange, routing_key, message.body, copy_properties(message), headers=headers,
                           mandatory=True, label=f"event {message.properties.get('message_id')}", callback=settled)

        def confirmed(message):  # the copy is safe with the broker: the dead one goes (one not acked stays)
            nonlocal moved
            channel.basic_ack(message.delivery_tag)
            moved += 1
            if progress_length:
                bar.update(1)

        try:
            with bar:
                errors = publisher.publish_all(messages, send, on_confirmed=confirmed)
        finally:
            publisher.close()
        return moved, errors

    def purge(self, worker: str) -> int:
        """Delete every dead event of ``worker`` for good; return how many."""
        queue = names.dead_letter_queue(self.namespace, worker)
        self._require(queue, "nothing to purge")
        with self.connection.channel() as channel:
            return channel.queue_purge(queue)


@contextmanager
def open_dead_letters(settings, tracing=None):
    """The namespace's DLQs on a connection of their own, released afterwards; with ``tracing`` (an
    eda.tracing.Tracing), each replay is a span in its event's trace."""
    connection = open_connection(settings)
    try:
        yield DeadLetters(connection, settings.namespace, tracing=tracing)
    finally:
        connection.release()


def depth_table(rows) -> list[str]:
    """``eda dlq list`` for people: worker, DLQ and depth in aligned columns."""
    return columns([("WORKER", "QUEUE", "DEPTH")] + [(w, q, "not declared" if d is None else str(d)) for w, q, d in rows])
