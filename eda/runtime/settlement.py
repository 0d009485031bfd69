"""Settling deliveries on the I/O thread: ack after the work, or move the event by a confirmed copy.

``Settlement`` decides what happens to each delivery once it was handled (or could not be):
reactions published and confirmed before the ack; a failure retried later or dead-lettered with its
reason; an event not handled (circuit open, stopping) given back. The Runner owns one, and it reads
the Runner's public state only: ``settings``, ``topology``, ``publisher``, ``session``, ``session_errors``,
and ``stopping`` (the publisher and session change with each connection); each consumer's ``chains`` hold
the middleware told of outcomes and wrapped around the reactions' publishing.
"""

import logging

from eda import names, tracing
from eda.middleware import DEAD_LETTERED, OK, REJECTED, REQUEUED, RETRIED
from eda.contracts.binary import claimed_identity
from eda.runtime import answers, failures
from eda.runtime.observing import tell
from eda.runtime.consumer import Delivery, Outcome

log = logging.getLogger("eda.worker")

MOVE_FAILED_PAUSE = 1.0  # seconds a worker stops taking deliveries after the broker refused a move
COPIED_PROPERTIES = ("content_type", "content_encoding", "message_id", "correlation_id", "type", "timestamp",
                     "app_id", "priority", "reply_to")


def copy_properties(message, keep_expiration: bool = False) -> dict:
    """The properties a moved copy keeps: ``message_id`` and ``correlation_id`` above all. Not the
    publisher's ``expiration`` (as RabbitMQ drops it when it dead-letters): a dead letter would expire
    in the DLQ, a retry come back before its delay; only an event given back unhandled keeps it."""
    props = {k: v for k, v in message.properties.items() if k in COPIED_PROPERTIES and v is not None}
    if keep_expiration and message.properties.get("expiration") is not None:
        props["expiration"] = message.properties["expiration"]
    props["delivery_mode"] = 2
    return props


class Settlement:
    """What happens to each delivery after its handler, for one Runner (see the module docstring)."""

    def __init__(self, runner):
        self.runner = runner

    def complete(self, outcome: Outcome) -> None:
        """Settle a handler's outcome on the I/O thread; an error while doing so fails the event."""
        d = outcome.delivery
        d.consumer.finished(d)
        if d.session is not self.runner.session:
            return  # its channel is gone with the old connection: the broker redelivers the event
        try:
            self._settle(d, outcome)
        except self.runner.session_errors:
            raise  # the connection or channel is gone: the session ends, the broker redelivers
        except Exception as exc:  # noqa: BLE001 - e.g. a reaction that cannot be written
            self.fail(d, exc)

    def _settle(self, d: Delivery, outcome: Outcome) -> None:
        if outcome.error is not None:
            self.fail(d, outcome.error)
            return
        reply_to = answers.reply_to(d, outcome, self._event_fields)  # a request's reply goes there
        if not outcome.reactions and reply_to is None:
            self._log_handled(d, outcome)
            self._processed(d, outcome.seconds)
            return
        remaining = [len(outcome.reactions) + (reply_to is not None)]
        errors = []
        chains = d.consumer.chains

        def settled(error):
            # The handled event is acked only once every reaction is confirmed.
            if error is not None:
                errors.append(error)
            remaining[0] -= 1
            if remaining[0] == 0 and d.session is self.runner.session:
                if errors:
                    self.fail(d, errors[0])
                else:
                    self._processed(d, outcome.seconds)
                    if chains.on_published:
                        for event, _ in outcome.reactions:
                            tell(chains.on_published, d.consumer.worker.name, event.type)

        exchange = self.runner.topology.events.name
        try:
            for event, body in outcome.reactions:
                self.runner.publisher.send_event(event, exchange, body=body, callback=settled,
                                                 middleware=chains.publish)
            if reply_to is not None:
                answers.send(self.runner.publisher, d, reply_to, outcome.reply, settled, self._event_fields,
                             middleware=chains.publish)
        finally:
            # Once the reactions are on their way: the line (~10-20 µs, a write) is not on their path to
            # the next worker, where it made every hop of a flow longer (issue 20).
            self._log_handled(d, outcome)

    @staticmethod
    def _log_handled(d: Delivery, outcome: Outcome) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info("handled %s", d.event.type,
                     extra=Settlement._event_fields(d, duration_ms=round(outcome.seconds * 1000, 3)))

    def _processed(self, d: Delivery, seconds) -> None:
        d.consumer.record(d)
        d.message.ack()
        self._outcome(d, OK, seconds)
        d.consumer.resolved(d, processed=True)

    def fail(self, d: Delivery, error: BaseException) -> None:
        """Retry the event later or dead-letter it, by a confirmed publish before the ack. Where even
        that copy cannot be written, the broker dead-letters the event (a reject, never a requeue)."""
        try:
            self._move(d, error)
        except self.runner.session_errors:
            raise
        except Exception as exc:  # noqa: BLE001 - the copy itself cannot be written
            log.error("cannot write the event's copy (%s: %s); rejected to the work queue's dead-letter "
                      "exchange instead", type(exc).__name__, failures.describe(exc)[:200],
                      extra=self._event_fields(d, error=f"{type(error).__name__}: {failures.describe(error)}"))
            d.message.reject(requeue=False)
            self._outcome(d, DEAD_LETTERED, None)
            d.consumer.resolved(d, processed=False)

    def _move(self, d: Delivery, error: BaseException) -> None:
        message, worker = d.message, d.consumer.worker.name
        kind = failures.classify(error)
        if kind == failures.CIRCUIT_OPEN and d.consumer.ordered:  # held at its partition's head, no attempt counted
            d.consumer.retry_in_place(d, int(d.consumer.worker.circuit_pause * 1000), counted=False)
            log.warning("circuit open: its partition waits %ss", d.consumer.worker.circuit_pause,
                        extra=self._event_fields(d))
            self._outcome(d, REQUEUED, None)
            return
        if kind == failures.CIRCUIT_OPEN:
            self.give_back(d)  # not the event's fault: no attempt counted
            self._outcome(d, REQUEUED, None)
            pause = d.consumer.worker.circuit_pause
            if d.consumer.paused_until is None:
                log.warning("circuit open: pausing for %ss", pause, extra={"worker": worker})
            d.consumer.pause(pause)
            return
        attempts = failures.retry_count(message.headers) + d.consumer.retried(d)
        delay = failures.next_delay(kind, attempts, self.runner.settings.retry_delays_ms)
        fields = self._event_fields(d, error=f"{type(error).__name__}: {failures.describe(error)}",
                                    attempt=attempts + 1)
        if delay is not None and d.consumer.ordered:
            # An ordered worker's retry stays at the head of its partition: a copy in a retry queue
            # would come back behind the events after it.
            log.warning("failed; retrying in place in %s (its partition waits)", names.format_delay(delay), extra=fields)
            d.consumer.retry_in_place(d, delay)
            self._outcome(d, RETRIED, None)
            return
        if delay is not None:
            exchange, routing_key = "", names.retry_queue(self.runner.settings.namespace, worker, delay)
            headers = failures.retry_headers(message.headers, message.delivery_info, attempts)
            log.warning("failed; retrying in %s", names.format_delay(delay), extra=fields)
        else:
            exchange, routing_key = self.runner.topology.dlx.name, d.consumer.queue_name
            headers = failures.dead_letter_headers(message.headers, message.delivery_info, error, worker=worker,
                                                   queue=d.consumer.queue_name, attempts=attempts)
            log.error("dead-lettered (%s)", kind, extra=fields)

        def settled(publish_error):
            if d.session is not self.runner.session:
                return
            if publish_error is None:
                message.ack()  # the copy is safe with the broker: now the original may go
                if delay is None:  # dead-lettered: its requester, if any, learns why now
                    answers.send_failure(self.runner.publisher, d, error, worker)
                self._outcome(d, RETRIED if delay is not None else REJECTED if kind == failures.CONTRACT
                              else DEAD_LETTERED, None)
            elif d.consumer.ordered:  # held at its partition's head; handled again after the pause
                log.error("could not move the event (%s); its partition waits %ss", publish_error, MOVE_FAILED_PAUSE,
                          extra=fields)
                d.consumer.retry_in_place(d, int(MOVE_FAILED_PAUSE * 1000), counted=False)
                return
            else:
                # Mandatory: a copy that no queue took (a retry queue or DLQ deleted) is not a move.
                log.error("could not move the event (%s); it goes back to its queue and the worker pauses "
                          "for %ss", publish_error, MOVE_FAILED_PAUSE, extra=fields)
                message.reject(requeue=True)
                if not self.runner.stopping:
                    d.consumer.pause(MOVE_FAILED_PAUSE)  # not a hot loop of redeliveries
            d.consumer.resolved(d, processed=False)

        self._send_copy(exchange, routing_key, message, headers, settled)

    def _send_copy(self, exchange: str, routing_key: str, message, headers: dict, callback,
                   keep_expiration: bool = False) -> None:
        """Publish a copy of a delivered message, confirmed and mandatory, with headers made writable."""
        self.runner.publisher.send(exchange, routing_key, message.body, copy_properties(message, keep_expiration),
                            headers=failures.encodable_headers(headers, own=failures.OWN_HEADERS), mandatory=True,
                            label=f"event {message.properties.get('message_id')}", callback=callback)

    def skip_processed(self, d: Delivery) -> None:
        """Ack an event the worker's record says it processed already (a redelivery, or a duplicate)."""
        log.info("already processed: acked without handling it again", extra=self._event_fields(d))
        d.message.ack()
        self._outcome(d, OK, None)

    def give_back(self, d: Delivery) -> None:
        """Return an event not handled (circuit open, pausing, stopping) to its queue, by a confirmed copy
        and then the ack: a requeue would spend one of a quorum queue's ``x-delivery-limit`` deliveries,
        and a long gateway outage would then dead-letter events that never failed."""
        message = d.message
        if self.runner.publisher is None or d.session is not self.runner.session:
            return  # the connection is gone: the broker redelivers the event anyway

        def settled(publish_error):
            if d.session is not self.runner.session:
                return
            if publish_error is None:
                message.ack()
            else:
                message.reject(requeue=True)
            d.consumer.resolved(d, processed=False)

        self._send_copy("", d.consumer.queue_name, message,
                        failures.given_back_headers(message.headers, message.delivery_info), settled,
                        keep_expiration=True)

    def _outcome(self, d: Delivery, outcome: str, seconds) -> None:
        chains = d.consumer.chains
        if chains.on_settled:
            tell(chains.on_settled, d, outcome)  # tracing's handling span ends here, with the outcome
        if chains.on_outcome:
            event_type = d.event.type if d.event is not None else self._claimed_type(d)
            tell(chains.on_outcome, d.consumer.worker.name, event_type, outcome, seconds)

    @staticmethod
    def _claimed_type(d: Delivery) -> str | None:
        """The type a message that is no valid event says it has, where the worker takes that type (an
        order.placed missing a field), else None: metrics labels stay within the worker's own types,
        whatever a hostile message claims."""
        _, claimed = claimed_identity(d.message.body, d.message.properties, d.message.headers)
        return claimed if claimed in d.consumer.accepted else None

    @staticmethod
    def _event_fields(d: Delivery, **extra) -> dict:
        info = d.message.delivery_info
        fields = {"worker": d.consumer.worker.name, "routing_key": info.get("routing_key")}
        if d.event is not None:
            fields.update(event_id=d.event.id, event_type=d.event.type, correlation_id=d.event.correlation_id)
            if d.event.span is not None:  # tracing on: the line joins the event's trace
                fields.update(tracing.span_ids(d.event.span))
        else:  # not a valid event: what it says it is, if anything
            event_id, event_type = claimed_identity(d.message.body, d.message.properties, d.message.headers)
            fields.update(event_id=event_id, event_type=event_type)
        fields.update(extra)
        return fields
