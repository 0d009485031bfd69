"""Answering requests, on the I/O thread: a handler's reply sent to its requester before the request
is acked, and a failure reply when a request is dead-lettered (the wire form: ``eda.replies``).

A reply goes through the default exchange with the request's ``reply_to`` as routing key, confirmed.
To a direct reply-to address it is sent without ``mandatory``: RabbitMQ 3.10 returns every mandatory
message to such an address as unroutable, delivered or not, so a return would say nothing; a reply
whose requester is gone is dropped by the broker and the request is acked all the same. To a named
reply queue (another client's own) it is mandatory, and a queue that is gone is logged, not a failure.
"""

import logging

from eda import replies
from eda.errors import Unroutable
from eda.runtime import failures

log = logging.getLogger("eda.worker")


def reply_to(d, outcome, fields) -> str | None:
    """Where the reply a handler gave goes, or None when there is none to send: the event was
    published, not requested (nobody waits), or the handler of a request gave none (logged: its
    requester waits until its timeout). ``fields(d, **extra)`` gives a delivery's log fields."""
    address = replies.reply_to_of(d.message.properties)
    if outcome.reply is None:
        if address is not None and d.event.contract.reply is not None:
            log.warning("a request handled without a reply: its requester gets none and times out "
                        "(return the reply's data, or call ctx.reply)", extra=fields(d))
        return None
    if address is None:
        log.debug("a reply to an event that was published, not requested: nobody waits for it", extra=fields(d))
    return address


def send(publisher, d, address: str, answer, settled, fields, middleware=None) -> None:
    """Publish the reply to ``address``, confirmed, through the worker's publish ``middleware``;
    ``settled(error_or_None)`` once the broker took it. A named reply queue that is gone is not the
    request's failure: logged, and settled as sent."""
    event, body = answer

    def done(error):
        if isinstance(error, Unroutable):
            log.warning("reply not delivered: its requester is gone (no reply queue %s)", address,
                        extra=fields(d, reply_id=event.id))
            error = None
        settled(error)

    publisher.send("", address, body, replies.reply_properties(event, d.message.properties),
                   mandatory=not replies.is_direct(address), label=f"reply {event.type} {event.id}",
                   callback=done, middleware=middleware, event=event)


def send_failure(publisher, d, error: BaseException, worker: str) -> None:
    """Tell the requester of a request ``worker`` dead-lettered why, at once, rather than let it wait
    for its timeout (best effort: not confirmed, not mandatory; the dead letter is safe already)."""
    address = replies.reply_to_of(d.message.properties)
    if address is None or d.event is None or d.event.contract.reply is None:
        return
    try:
        body, properties = replies.failure(d.event, d.message.properties, error, worker=worker,
                                           source=d.consumer.worker.source, reason=failures.describe(error))
        publisher.send("", address, body, properties, mandatory=False, label=f"failure reply to {d.event.id}")
    except Exception as exc:  # noqa: BLE001 - the request is dead-lettered already; its requester times out
        log.warning("cannot send the failure reply (%s: %s); the requester times out", type(exc).__name__,
                    failures.describe(exc)[:200], extra={"worker": worker, "event_id": d.event.id})
