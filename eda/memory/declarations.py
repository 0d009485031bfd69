"""Declaring, binding and deleting the in-memory broker's exchanges and queues, checked as RabbitMQ checks them.

A redeclare with other properties or arguments is PRECONDITION_FAILED in RabbitMQ's words (the queue
arguments RabbitMQ 3.10 compares, an exchange's type, durability and auto-delete), a passive declare
of what is not there NOT_FOUND, names starting ``amq.`` and the default exchange ACCESS_REFUSED, an
exclusive queue of another connection RESOURCE_LOCKED; a quorum queue must be durable, not exclusive,
not auto-delete; a consistent-hash binding key is a weight. Each error closes the channel, as in RabbitMQ.
"""

import hashlib

from amqp import spec
from amqp.exceptions import ConnectionError, error_for_code

from eda.memory import wire
from eda.memory.routing import Exchange, Queue


def reply_text(code_name: str, text: str) -> str:
    """A channel or connection error's text as RabbitMQ writes it."""
    return f"{code_name} - {text}"


_reply_text = reply_text


class Declarations:
    """The declaring half of ``eda.memory.broker.Broker`` (which gives ``exchanges``, ``queues``,
    ``_serial``, ``_fail`` and ``_remove_consumer``)."""

    # Exchanges

    def declare_exchange(self, state, name, kind, passive=False, durable=False, auto_delete=False,
                         arguments=None) -> None:
        method = spec.Exchange.Declare
        existing = self.exchanges.get(name)
        if passive:
            if existing is None:
                raise self._fail(state, 404, _reply_text("NOT_FOUND", f"no exchange '{name}' in vhost '/'"), method)
            return
        if name == "" or name.startswith("amq."):
            raise self._fail(state, 403, _reply_text("ACCESS_REFUSED", f"exchange name '{name}' contains reserved "
                                                      f"prefix 'amq.*'"), method)
        if kind not in Exchange.TYPES:  # a connection error in RabbitMQ, as here
            state.connection.close()
            raise error_for_code(503, _reply_text("COMMAND_INVALID", f"unknown exchange type '{kind}'"), method,
                                 ConnectionError)
        arguments = dict(arguments or {})
        if kind == "x-consistent-hash" and "hash-header" in arguments and "hash-property" in arguments:
            raise self._fail(state, 406, _reply_text("PRECONDITION_FAILED", "hash-header and hash-property are "
                                                     "mutually exclusive"), method)
        if existing is None:
            self.exchanges[name] = Exchange(name, kind, durable=bool(durable), auto_delete=bool(auto_delete),
                                            arguments=arguments)
            return
        for field, asked, current in (("type", kind, existing.kind), ("durable", bool(durable), existing.durable),
                                      ("auto_delete", bool(auto_delete), existing.auto_delete)):
            if asked != current:
                raise self._fail(state, 406, _reply_text(
                    "PRECONDITION_FAILED", f"inequivalent arg '{field}' for exchange '{name}' in vhost '/': "
                    f"received {wire.shown(asked)} but current is {wire.shown(current)}"), method)
        # RabbitMQ compares only alternate-exchange among an exchange's arguments.
        mismatch = wire.argument_mismatch(existing.arguments, arguments, keys=("alternate-exchange",))
        if mismatch:
            raise self._fail(state, 406, _reply_text("PRECONDITION_FAILED", f"inequivalent arg {mismatch[0]} for "
                                                     f"exchange '{name}' in vhost '/': {mismatch[1]}"), method)

    def delete_exchange(self, state, name, if_unused=False) -> None:
        if name == "" or name.startswith("amq."):
            raise self._fail(state, 403, _reply_text("ACCESS_REFUSED", f"exchange name '{name}' contains reserved "
                                                     f"prefix 'amq.*'"), spec.Exchange.Delete)
        exchange = self.exchanges.get(name)
        if exchange is None:
            return  # deleting what is not there succeeds, as in RabbitMQ 3.x
        if if_unused and exchange.bindings:
            raise self._fail(state, 406, _reply_text("PRECONDITION_FAILED", f"exchange '{name}' in vhost '/' in "
                                                     f"use"), spec.Exchange.Delete)
        del self.exchanges[name]
        for other in self.exchanges.values():
            other.unbind_all(exchange)

    def bind(self, state, destination, source, routing_key="", arguments=None, *, kind="queue", unbind=False):
        """Bind (or unbind) a queue or an exchange (``kind``) to the exchange ``source``."""
        method = {("queue", False): spec.Queue.Bind, ("queue", True): spec.Queue.Unbind,
                  ("exchange", False): spec.Exchange.Bind, ("exchange", True): spec.Exchange.Unbind}[kind, unbind]
        if source == "" or (kind == "exchange" and destination == ""):
            raise self._fail(state, 403, _reply_text("ACCESS_REFUSED", "operation not permitted on the default "
                                                     "exchange"), method)
        target = (self.queues if kind == "queue" else self.exchanges).get(destination)
        if target is None:
            raise self._fail(state, 404, _reply_text("NOT_FOUND", f"no {kind} '{destination}' in vhost '/'"), method)
        exchange = self.exchanges.get(source)
        if exchange is None:
            raise self._fail(state, 404, _reply_text("NOT_FOUND", f"no exchange '{source}' in vhost '/'"), method)
        if unbind:
            exchange.unbind(target, routing_key, arguments)
            return
        problem = exchange.binding_problem(routing_key)
        if problem:
            raise self._fail(state, 406, _reply_text("PRECONDITION_FAILED", problem), method)
        exchange.bind(target, routing_key, arguments)

    # Queues

    def declare_queue(self, state, name="", passive=False, durable=False, exclusive=False, auto_delete=False,
                      arguments=None) -> tuple[str, int, int]:
        method = spec.Queue.Declare
        existing = self.queues.get(name)
        if existing is not None and existing.owner is not None and existing.owner is not state.connection:
            raise self._fail(state, 405, _reply_text("RESOURCE_LOCKED", f"cannot obtain exclusive access to locked "
                                                     f"queue '{name}' in vhost '/'"), method)
        if passive:
            if existing is None:
                raise self._fail(state, 404, _reply_text("NOT_FOUND", f"no queue '{name}' in vhost '/'"), method)
            return name, len(existing.messages), len(existing.consumers)
        if name.startswith("amq."):
            raise self._fail(state, 403, _reply_text("ACCESS_REFUSED", f"queue name '{name}' contains reserved prefix "
                                                     f"'amq.*'"), method)
        arguments = dict(arguments or {})
        if existing is not None:
            for field, asked, current in (("durable", durable, existing.durable),
                                          ("auto_delete", auto_delete, existing.auto_delete)):
                if bool(asked) != bool(current):
                    raise self._fail(state, 406, _reply_text(
                        "PRECONDITION_FAILED", f"inequivalent arg '{field}' for queue '{name}' in vhost '/': received "
                        f"{wire.shown(bool(asked))} but current is {wire.shown(bool(current))}"), method)
            mismatch = wire.argument_mismatch(existing.arguments, arguments)
            if mismatch:
                raise self._fail(state, 406, _reply_text("PRECONDITION_FAILED", f"inequivalent arg {mismatch[0]} for "
                                                         f"queue '{name}' in vhost '/': {mismatch[1]}"), method)
            return name, len(existing.messages), len(existing.consumers)
        if arguments.get("x-queue-type") == "quorum":
            for bad, why in ((not durable, "non-durable"), (exclusive, "exclusive-owner"),
                             (auto_delete, "auto-delete")):
                if bad:
                    raise self._fail(state, 406, _reply_text("PRECONDITION_FAILED", f"invalid property '{why}' for "
                                                             f"queue '{name}' in vhost '/'"), method)
        name = name or f"amq.gen-{hashlib.blake2b(str(next(self._serial)).encode(), digest_size=11).hexdigest()}"
        self.queues[name] = Queue(name, durable=durable, auto_delete=auto_delete, arguments=arguments,
                                  owner=state.connection if exclusive else None)
        return name, 0, 0

    def delete_queue(self, state, name, if_unused=False, if_empty=False) -> int:
        queue = self.queues.get(name)
        if queue is None:
            return 0
        for bad, why in ((if_unused and queue.consumers, "in use"), (if_empty and queue.messages, "not empty")):
            if bad:
                raise self._fail(state, 406, _reply_text("PRECONDITION_FAILED", f"queue '{name}' in vhost '/' {why}"),
                                 spec.Queue.Delete)
        return self._delete_queue(queue)

    def _delete_queue(self, queue: Queue) -> int:
        count = len(queue.messages)
        del self.queues[queue.name]
        for exchange in self.exchanges.values():
            exchange.unbind_all(queue)
        for consumer in list(queue.consumers):
            self._remove_consumer(consumer, auto_delete=False)
            consumer.state.send("cancel", consumer.tag)  # the server cancels consumers of a deleted queue
        return count

    def purge_queue(self, state, name) -> int:
        queue = self.queues.get(name)
        if queue is None:
            raise self._fail(state, 404, _reply_text("NOT_FOUND", f"no queue '{name}' in vhost '/'"), spec.Queue.Purge)
        count = len(queue.messages)
        queue.messages.clear()
        return count
