"""The requester: many requests in flight on one connection, over RabbitMQ's direct reply-to.

One thread owns the requester's connection (py-amqp is not thread-safe). Callers, threads or
coroutines, validate and encode their request themselves, hand it over and wait on a future kept
under the request's id (``eda.publishing.pending``). The thread publishes each request confirmed and
mandatory with ``reply_to`` ``amq.rabbitmq.reply-to`` on the channel that consumes the replies (direct
reply-to needs both on one channel), and completes the future with the reply that answers it
(``eda.replies.answered``), validated against the reply's contract. A request no queue takes fails
at once (``Unroutable``); one with no reply within its timeout raises ``RequestTimeout``; one a worker
dead-lettered gets a failure reply (``RequestFailed``). A lost connection fails the requests in
flight (``BrokerUnavailable``: they may have been handled); the next request connects again.
"""

import asyncio
import logging
import struct
import threading
import time
from collections import deque
from concurrent.futures import Future

from eda import names, replies, wakeup
from eda.connection import describe_connection_error, open_connection
from eda.contracts.binary import decode_message
from eda.contracts.envelope import Event
from eda.errors import BrokerUnavailable, ContractError, EdaError, RequestTimeout, Unroutable
from eda.publishing.partitioning import partition_headers
from eda.publishing.pending import PendingRequests
from eda.publishing.publisher import Publisher
from eda.contracts.envelope import event_properties
from eda.settings import Settings
from eda.topology import Topology
from eda.wakeup import WakeUp

log = logging.getLogger("eda.requests")


def timeout_message(request: Event, timeout: float) -> str:
    return (f"{request.type}: no reply within {names.format_delay(round(timeout * 1000))} (request {request.id}; "
            f"is a worker that handles it running, and not failing and retrying it? its log says)")


class Requester:
    """A connection, its I/O thread and the requests in flight on it (see the module docstring)."""

    def __init__(self, settings: Settings, middleware=None):
        self.exchange = Topology(settings.namespace).events.name
        self.middleware = middleware  # the publish chain each request goes through (its producer's)
        self.pending = PendingRequests()
        self._outbox = deque()  # (event, body) handed over by callers, not yet published
        self._wakeup = WakeUp()  # callers wake the I/O thread; closed when the Requester is collected
        self._closing = False
        self.alive = True
        self._conn = open_connection(settings)
        try:
            self._publisher = Publisher(self._conn)
            channel = self._publisher.channel
            channel.auto_decode = False  # bodies stay bytes: eda decodes UTF-8 JSON itself
            Topology(settings.namespace).declare_exchanges(channel)
            # Direct reply-to: consumed without acks, on the channel the requests are published on.
            channel.basic_consume(replies.DIRECT_REPLY_TO, no_ack=True, callback=self._on_reply)
        except BaseException:
            self._conn.release()
            raise
        self._thread = threading.Thread(target=self._serve, name="eda-requests", daemon=True)
        self._thread.start()

    # Callers' side (any thread)

    def submit(self, request: Event, body: bytes, reply_type: str, timeout: float) -> Future:
        """Hand a validated, encoded request to the I/O thread; the future gets its reply. The request
        expires when its caller stops waiting, ``timeout`` seconds from now (``eda.replies.expiry``)."""
        future = self.pending.add(request, reply_type)
        self._outbox.append((request, body, time.time() + timeout))
        if not self.alive:  # the I/O thread ended meanwhile: nobody would send it
            self.pending.settle(request.id, error=BrokerUnavailable("lost the broker connection; try again"))
        else:
            self._wakeup.wake_once()
        return future

    def call(self, request: Event, body: bytes, reply_type: str, timeout: float) -> Event:
        future = self.submit(request, body, reply_type, timeout)
        try:
            return future.result(timeout)
        except TimeoutError:
            self.pending.discard(request.id)
            raise RequestTimeout(timeout_message(request, timeout)) from None

    async def call_async(self, request: Event, body: bytes, reply_type: str, timeout: float) -> Event:
        future = self.submit(request, body, reply_type, timeout)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except asyncio.TimeoutError:
            self.pending.discard(request.id)
            raise RequestTimeout(timeout_message(request, timeout)) from None

    def close(self) -> None:
        """Stop the I/O thread and close the connection; requests still waiting fail."""
        self._closing = True
        self._wakeup.wake()
        if self._thread is not threading.current_thread():
            self._thread.join(10)

    # The I/O thread

    def _serve(self) -> None:
        error = BrokerUnavailable("the producer was closed while the request waited for its reply")
        lost = False
        next_heartbeat = 0.0
        try:
            while not self._closing:
                self._wait(1.0)
                self._send_handed_over()
                now = time.monotonic()
                if now >= next_heartbeat:
                    self._conn.heartbeat_check()
                    next_heartbeat = now + 1.0
        except Exception as exc:  # noqa: BLE001 - whatever ends the connection fails what waits on it
            lost = True
            reason = str(exc) if isinstance(exc, EdaError) else describe_connection_error(exc)
            log.warning("requests: lost the broker connection (%s); requests in flight fail", reason)
            error = BrokerUnavailable(f"lost the broker connection while the request waited for its reply "
                                      f"(it may have been handled): {reason}")
        finally:
            self.alive = False
            self._outbox.clear()
            self.pending.fail_all(error)
            self._publisher.fail_all(error)
            try:
                self._conn.collect() if lost else self._conn.release()
            except Exception:  # noqa: BLE001 - already broken: nothing to close
                pass

    def _wait(self, timeout: float) -> None:
        """Block until the broker or a caller has something, then take all of it."""
        wakeup.wait(self._conn.connection, self._wakeup, timeout)

    def _send_handed_over(self) -> None:
        while self._outbox:
            request, body, expires = self._outbox.popleft()
            if request.id in self.pending:  # else its caller stopped waiting before it could be sent
                self._send(request, body, expires)

    def _send(self, request: Event, body: bytes, expires: float) -> None:
        def settled(error, request_id=request.id, request_type=request.type):
            if isinstance(error, Unroutable):
                error = Unroutable(f"{request_type}: routed to no queue: no worker takes this request "
                                   f"(request {request_id})")
            if error is not None:
                self.pending.settle(request_id, error=error)

        now = time.time()
        expiration, expiry_headers = replies.expiry(expires - now, now)
        properties = {**event_properties(request), "reply_to": replies.DIRECT_REPLY_TO, "expiration": expiration}
        try:
            self._publisher.send(self.exchange, request.type, body, properties,
                                 headers={**partition_headers(request, body), **expiry_headers}, mandatory=True,
                                 label=f"{request.type} {request.id}", callback=settled,
                                 middleware=self.middleware, event=request)
        except self._conn.connection_errors:
            raise
        except (TypeError, ValueError, struct.error) as exc:  # a property py-amqp cannot encode: nothing sent
            self.pending.settle(request.id, error=ContractError(f"{request.type}: cannot be sent: {exc}"))

    def _on_reply(self, message) -> None:
        """A message on the direct reply-to consumer: the reply (or failure reply) of a request waiting."""
        properties = message.properties or {}
        headers = properties.get("application_headers") or {}
        request_id = replies.answered(message.body, properties, headers, self.pending)
        waiting = self.pending.get(request_id) if request_id is not None else None
        if waiting is None:
            log.debug("requests: a reply that answers no request waiting here (it came after its timeout)")
            return
        request = waiting.request
        try:
            error = replies.failed(message.body, properties, request)
            if error is not None:
                self.pending.settle(request.id, error=error)
                return
            reply = decode_message(message.body, properties.get("content_type"), headers,
                                   frozenset((waiting.reply_type,)))
        except ContractError as exc:
            self.pending.settle(request.id, error=ContractError(f"{request.type}: its reply is invalid: {exc}"))
            return
        except Exception as exc:  # noqa: BLE001 - one bad reply fails its request, never the connection
            self.pending.settle(request.id, error=ContractError(
                f"{request.type}: its reply cannot be read: {type(exc).__name__}: {exc}"))
            return
        self.pending.settle(request.id, reply)
