"""``eda status``: each worker's queues with their message and consumer counts, read over AMQP, and
where the workers keep their state.

A passive ``queue.declare`` answers both counts for a queue that exists and fails (closing the
channel) for one that does not, so no management plugin is needed.
"""

from dataclasses import asdict, dataclass

from eda import names

WORK, RETRY, DLQ, PARTITION = "work", "retry", "dlq", "partition"


@dataclass(frozen=True)
class QueueStatus:
    worker: str
    queue: str
    kind: str  # work, retry, dlq or partition (an ordered worker's)
    exists: bool
    messages: int | None = None
    consumers: int | None = None
    # A partition has a single active consumer: the broker delivers to one of its consumers (every
    # instance of the worker registers one) and counts the standbys among ``consumers``.
    active: bool | None = None


def queue_status(connection, topology, workers, ordered=()) -> list[QueueStatus]:
    """The status of every queue ``topology`` declares for each of ``workers``; those named in
    ``ordered`` (ordered workers) have partitions instead of a work queue and retry queues."""
    rows = []
    channel = connection.channel()
    try:
        for worker in workers:
            queues = topology.ordered_queue_names(worker) if worker in ordered else topology.worker_queue_names(worker)
            for queue in queues:
                kind = (WORK if queue == names.work_queue(topology.namespace, worker)
                        else DLQ if queue == names.dead_letter_queue(topology.namespace, worker)
                        else PARTITION if worker in ordered else RETRY)
                try:
                    ok = channel.queue_declare(queue, passive=True)
                except connection.channel_errors:  # 404: the broker closed the channel
                    rows.append(QueueStatus(worker, queue, kind, exists=False))
                    channel = connection.channel()
                    continue
                rows.append(QueueStatus(worker, queue, kind, True, ok.message_count, ok.consumer_count,
                                        active=ok.consumer_count > 0 if kind == PARTITION else None))
    finally:
        channel.close()
    return rows


def problems(rows: list[QueueStatus]) -> list[str]:
    """What a monitoring check should alert on: dead events, and work queues nobody consumes."""
    found = []
    for row in rows:
        if row.kind == DLQ and row.messages:
            found.append(f"{row.queue} holds {row.messages} dead event{'s' if row.messages != 1 else ''}")
        elif row.kind == WORK and not row.exists:
            found.append(f"{row.queue} is not declared")
        elif row.kind in (WORK, PARTITION) and not row.exists:
            found.append(f"{row.queue} is not declared")
        elif row.kind == WORK and not row.consumers:
            found.append(f"{row.queue} has no consumer")
        elif row.kind == PARTITION and not row.active:
            found.append(f"{row.queue} has no active consumer")
    return found


def as_table(rows: list[QueueStatus]) -> str:
    """One line per queue; with an ordered worker's partitions, an ACTIVE column says which has its
    single active consumer."""
    partitions = any(r.kind == PARTITION for r in rows)
    table = [("WORKER", "QUEUE", "KIND", "MESSAGES", "CONSUMERS", *(("ACTIVE",) if partitions else ()))]
    for r in rows:
        active = ("yes" if r.active else "no") if r.kind == PARTITION and r.exists else "-"
        table.append((r.worker, r.queue, r.kind, str(r.messages) if r.exists else "missing",
                      str(r.consumers) if r.exists else "-", *((active,) if partitions else ())))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(line, widths))).rstrip() for line in table)


def as_json(rows: list[QueueStatus], state: dict | None = None) -> dict:
    found = problems(rows)
    doc = {"healthy": not found, "problems": found, "queues": [asdict(r) for r in rows]}
    if state is not None:
        doc["state"] = state
    return doc


def state_line(state: dict) -> str:
    """Where the workers keep their state, for people: a SQLite folder, or a database and its schema
    (``eda.store.describe``, which never holds a password)."""
    if state["backend"] == "sqlite":
        return f"state: sqlite files under {state['location']}"
    return f"state: postgresql {state['location']}, schema {state.get('schema', '?')}"
