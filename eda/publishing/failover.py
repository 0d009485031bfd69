"""Publishing through a lost broker connection: the events the broker had not confirmed are sent again
on a new connection (to another broker of a failover list ``amqp://h1//;amqp://h2//``).

An event the broker took just before the loss, its confirm lost with the connection, goes out twice
with the same id: consumers absorb the duplicate (they record the ids they processed). None is lost.
"""

import logging
import time

from eda.errors import BrokerUnavailable

log = logging.getLogger("eda.publish")


class Progress:
    """Which items of a batch the broker confirmed, by position, in memory bounded by the confirm
    window (not by the batch): every item before ``done`` is confirmed, and those in ``ahead``."""

    def __init__(self):
        self.done = 0
        self._ahead: set[int] = set()

    def confirm(self, index: int) -> None:
        self._ahead.add(index)
        while self.done in self._ahead:
            self._ahead.discard(self.done)
            self.done += 1

    def confirmed(self, index: int) -> bool:
        return index < self.done or index in self._ahead

    @property
    def count(self) -> int:
        return self.done + len(self._ahead)


def reiterable(items):
    """``items`` as something that can be iterated again after a loss (a list, or a Batch, which reads
    its spool file again); a one-pass iterator is taken into a list."""
    return list(items) if iter(items) is items else items


def publish_through_losses(attempt, reconnect_window: float, *, connected) -> None:
    """Call ``attempt(progress)`` until it returns. ``attempt`` publishes every item ``progress`` does
    not hold as confirmed and records each confirm in it; a BrokerUnavailable from it (a lost
    connection) is followed by another attempt on a new connection, for as long as the broker stays
    away no longer than ``reconnect_window`` seconds without a confirm. ``connected()`` tells whether a
    connection was ever made: a broker unreachable from the start fails at once, as it did before."""
    progress = Progress()
    lost_since, confirmed_then, backoff = None, 0, 0.0
    while True:
        try:
            attempt(progress)
            return
        except BrokerUnavailable as exc:
            if not connected():
                raise
            now = time.monotonic()
            if lost_since is None or progress.count > confirmed_then:  # confirms since: a new loss
                lost_since, confirmed_then, backoff = now, progress.count, 0.0
            elif now - lost_since > reconnect_window:
                raise BrokerUnavailable(f"the broker stayed unreachable for over {reconnect_window:.0f}s: "
                                        f"{exc}") from None
            log.warning("broker connection lost while publishing (%s); sending the unconfirmed events again%s",
                        exc, f" in {backoff:.1f}s" if backoff else "")
            time.sleep(backoff)  # the first retry at once: another broker of the list may answer
            backoff = min(backoff * 2 or 0.5, 5.0)
