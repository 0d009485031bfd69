"""``eda status``: each worker's queues with their message and consumer counts, read over AMQP.

A passive ``queue.declare`` answers both counts for a queue that exists and fails (closing the
channel) for one that does not, so no management plugin is needed.
"""

from dataclasses import asdict, dataclass

from eda import names

WORK, RETRY, DLQ = "work", "retry", "dlq"


@dataclass(frozen=True)
class QueueStatus:
    worker: str
    queue: str
    kind: str  # work, retry or dlq
    exists: bool
    messages: int | None = None
    consumers: int | None = None


def queue_status(connection, topology, workers) -> list[QueueStatus]:
    """The status of every queue ``topology`` declares for each of ``workers``."""
    rows = []
    channel = connection.channel()
    try:
        for worker in workers:
            for queue in topology.worker_queue_names(worker):
                kind = (WORK if queue == names.work_queue(topology.namespace, worker)
                        else DLQ if queue == names.dead_letter_queue(topology.namespace, worker) else RETRY)
                try:
                    ok = channel.queue_declare(queue, passive=True)
                except connection.channel_errors:  # 404: the broker closed the channel
                    rows.append(QueueStatus(worker, queue, kind, exists=False))
                    channel = connection.channel()
                    continue
                rows.append(QueueStatus(worker, queue, kind, True, ok.message_count, ok.consumer_count))
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
        elif row.kind == WORK and not row.consumers:
            found.append(f"{row.queue} has no consumer")
    return found


def as_table(rows: list[QueueStatus]) -> str:
    table = [("WORKER", "QUEUE", "KIND", "MESSAGES", "CONSUMERS")]
    for r in rows:
        table.append((r.worker, r.queue, r.kind, str(r.messages) if r.exists else "missing",
                      str(r.consumers) if r.exists else "-"))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(line, widths))).rstrip() for line in table)


def as_json(rows: list[QueueStatus]) -> dict:
    found = problems(rows)
    return {"healthy": not found, "problems": found, "queues": [asdict(r) for r in rows]}
