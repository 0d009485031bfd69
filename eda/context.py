"""What a handler may do besides computing (``Context``, its ``ctx``): publish reactions to the event it
handles, at once or when due, and answer a request. Reactions are validated and encoded here, on the
handler's thread; the runtime sends them after the handler returned, before the event is acked."""

from datetime import datetime, timedelta

from eda.contracts import registry
from eda.contracts.envelope import Event, encode
from eda.errors import ContractError


class Context:
    """What a handler may do besides computing: publish reactions to the event it handles, at once or
    when due. ``worker`` is the worker handling it (None for a context made by hand), for middleware."""

    __slots__ = ("event", "source", "reactions", "scheduled", "answer", "worker")

    def __init__(self, event: Event, source: str, worker=None):
        self.event = event
        self.source = source
        self.reactions: list[tuple[Event, bytes]] = []
        self.scheduled: list[tuple[Event, bytes, float]] = []  # (reaction, body, due time in Unix seconds)
        self.answer: tuple[Event, bytes] | None = None  # the reply to a request, and its body
        self.worker = worker

    def publish(self, event_type: registry.EventRef, data: dict, *, at: datetime | None = None,
                delay: timedelta | float | None = None) -> Event:
        """Queue a reaction (Python values, snake_case keys): same correlation id, the handled event as
        its cause.

        It is validated and encoded here, on the handler's thread: a reaction that breaks its contract
        fails the handler with ContractError (the event is dead-lettered with the reason, and nothing
        is sent) instead of failing in the worker that would receive it.

        With ``at`` (an aware datetime) or ``delay`` (a timedelta or seconds) the reaction is scheduled:
        written to the outbox of the worker's database before the handled event is acked, and
        published by ``eda outbox relay`` when due. Its id comes from the handled event's id and the
        reaction's place among the handler's scheduled ones, so a redelivered event writes it once."""
        contract = registry.get(event_type)
        loaded, wire = contract.from_python(data)
        reaction = self.event.reaction(contract.type, loaded, self.source, contract.version,
                                       index=sum(1 for r, _ in self.reactions if r.type == contract.type))
        if at is not None or delay is not None:
            from eda.due import due_time, rfc3339, derived_id

            due = due_time(at, delay)
            reaction.id = derived_id(self.source, self.event.id, str(len(self.scheduled)))
            reaction.time = rfc3339(due)
            self.scheduled.append((reaction, encode(reaction, wire), due))
            return reaction
        self.reactions.append((reaction, encode(reaction, wire)))
        return reaction

    def reply(self, data: dict) -> Event:
        """Answer the request being handled: ``data`` as ``publish`` takes it, validated here against
        the reply contract the request's contract names (``@contract(..., reply=...)``); one that breaks
        it raises ContractError, and the request is dead-lettered. The reply is sent to the requester
        alone (the request's ``reply_to``) once the handler returned, confirmed before the request is
        acked. A handler may instead return the reply's data."""
        contract = registry.get(self.event.type)
        if contract.reply is None:
            raise ContractError(f"{contract.type} declares no reply: only a request is answered "
                                f"(@contract({contract.type!r}, reply=...))")
        if self.answer is not None:
            raise ContractError(f"{contract.type}: a request has one reply; this handler gave a second")
        reply_contract = contract.reply_contract()
        loaded, wire = reply_contract.from_python(data)
        # Rank -1: the reply's id, derived as a reaction's is, is never that of a reaction of its type.
        answer = self.event.reaction(reply_contract.type, loaded, self.source, index=-1)
        self.answer = (answer, encode(answer, wire))
        return answer

    def returned(self, result) -> None:
        """What the handler returned: a request's reply data (a dict), else nothing. A value returned
        by the handler of an event that is no request is ignored."""
        if result is None or registry.get(self.event.type).reply is None:
            return
        if not isinstance(result, dict):
            raise ContractError(f"{self.event.type}: a request's handler returns its reply's data as a dict, "
                                f"or None; it returned {type(result).__name__}")
        self.reply(result)
