"""Copies of one event in flight at once, for workers that rely on the processed-event record.

The record knows an event once its reactions are confirmed and its id committed. A second copy of
the same event (a producer's retry, a redelivery racing the first) can arrive before that, while the
first is being handled or awaits its confirms. It then waits here for the first copy's outcome: acked
without handling once the first was processed, or handled in its turn if the first failed or was
given back. One process only: across processes the record is per process.
"""

from collections import deque


class Duplicates:
    """Event ids being handled by this worker, each with the copies that arrived meanwhile."""

    def __init__(self):
        self._active: dict[str, deque] = {}

    def arrived(self, delivery) -> bool:
        """Register a copy; False when it is the only one in flight (go on), True when it must wait."""
        waiting = self._active.get(delivery.event.id)
        if waiting is None:
            self._active[delivery.event.id] = deque()
            return False
        waiting.append(delivery)
        return True

    def resolved(self, delivery, processed: bool) -> tuple[list, object]:
        """The copy in flight reached its end: processed (acked), or not (moved, given back).

        Returns the copies to ack without handling (all that waited, once one was processed) and the
        copy that now goes on in its place (the first that waited, when none was processed), whose
        followers keep waiting behind it."""
        waiting = self._active.pop(delivery.event.id, None)
        if not waiting:
            return [], None
        if processed:
            return list(waiting), None
        successor = waiting.popleft()
        self._active[successor.event.id] = waiting
        return [], successor

    def clear(self) -> None:
        """A new session: deliveries of the old one are gone (the broker redelivers them)."""
        self._active.clear()

    def __contains__(self, event_id) -> bool:
        return event_id in self._active
