"""Publisher confirms, the bookkeeping: which publishes the broker has not settled yet, by delivery tag.

A channel in confirm mode numbers its publishes 1, 2, 3...; the broker acks or nacks each, and an ack
(or nack) with ``multiple`` settles every tag up to its own. A ``mandatory`` message that no queue
took comes back as ``basic.return`` before its ack: that ack settles it with ``Unroutable``, not as a
success. Pure logic, no I/O: the ``Publisher`` tells it what was sent and what the broker answered.
"""

from collections import deque
from collections.abc import Callable

from eda.errors import PublishError, Unroutable

Settled = Callable[[Exception | None], None]  # called once per publish: None when the broker took it


def _text(label) -> str:
    """What names a publish in an error: its label, or the type and id of the event it is."""
    return label if isinstance(label, str) else f"{label.type} {label.id}"


class Confirms:
    """The unsettled publishes of one confirm-mode channel, in publish order."""

    __slots__ = ("_pending", "_returned", "_tag")

    def __init__(self):
        self._pending: dict[int, tuple] = {}  # delivery tag -> (label, callback, message id)
        self._returned: dict[object, deque] = {}  # message id -> reasons, from basic.return, until its ack
        self._tag = 0

    def __len__(self) -> int:
        return len(self._pending)

    def sent(self, label, callback: Settled | None, message_id=None) -> int:
        """Count a publish the channel sent (only once sent: the broker numbers what it received);
        ``label`` (text, or the event) names it in an error. Returns its delivery tag."""
        self._tag += 1
        self._pending[self._tag] = (label, callback, message_id)
        return self._tag

    def ack(self, tag: int, multiple: bool = False) -> None:
        """The broker took ``tag`` (and, with ``multiple``, every tag before it)."""
        self._settle(tag, multiple, None)

    def nack(self, tag: int, multiple: bool = False) -> None:
        """The broker refused ``tag`` (and, with ``multiple``, every tag before it)."""
        self._settle(tag, multiple, "the broker refused it (nack)")

    def returned(self, message_id, exchange: str, routing_key: str) -> None:
        """A mandatory message came back unrouted; its ack, which follows, settles it as Unroutable."""
        reason = f"routed to no queue (exchange {exchange!r}, routing key {routing_key!r})"
        self._returned.setdefault(message_id, deque()).append(reason)

    def fail_all(self, error: Exception) -> None:
        """Settle everything unsettled with ``error`` (the channel or its connection is gone)."""
        pending, self._pending = self._pending, {}
        self._returned.clear()
        for _, callback, _ in pending.values():
            if callback:
                callback(error)

    def _settle(self, tag: int, multiple: bool, refused: str | None) -> None:
        if multiple:
            tags = []
            for t in self._pending:  # in publish order: stop at the first tag past the answer's
                if t > tag:
                    break
                tags.append(t)
        else:
            tags = [tag] if tag in self._pending else []
        for t in tags:
            label, callback, message_id = self._pending.pop(t)
            error = PublishError(f"{_text(label)}: {refused}") if refused else None
            reasons = self._returned.get(message_id) if self._returned else None
            if reasons:  # returned before its ack: taken by the broker, routed nowhere
                error = Unroutable(f"{_text(label)}: {reasons.popleft()}")
                if not reasons:
                    del self._returned[message_id]
            if callback:
                callback(error)
