"""Request-reply for applications: ``Producer.request`` publishes a request and waits for its reply.

    answer = producer.request("quote.requested", {"sku": "A", "quantity": 2}, timeout=5)
    answer = await producer.request_async("quote.requested", {"sku": "A", "quantity": 2}, timeout=5)

The request is validated and encoded on the caller's thread, as ``publish`` does, and handed to the
producer's ``Requester`` (``eda.publishing.requester``): one connection with one I/O thread, shared by
every thread and coroutine that asks.
"""

import asyncio
import threading

from eda.contracts import registry
from eda.contracts.envelope import Event, encode, new_event
from eda.contracts.registry import EventRef
from eda.errors import ConfigError
from eda.publishing.requester import Requester
from eda.settings import Settings

MAX_TIMEOUT = 86_400.0  # seconds: a day; a reply later than that is no reply


class Requests:
    """The request side of ``Producer`` (a base class of it): ``request``, ``request_async`` and
    ``request_event``, sharing one ``Requester`` (connected on first use) among all callers."""

    settings: Settings
    source: str
    _requester: Requester | None = None

    def request(self, event: EventRef, data: dict, timeout: float = 5.0,
                correlation_id: str | None = None) -> Event:
        """Publish a request (data as ``publish`` takes it) and wait for its reply: the reply ``Event``,
        validated against the reply contract its contract names. Raises ``RequestTimeout`` past
        ``timeout`` seconds, ``Unroutable`` at once when no queue takes the request, ``RequestFailed``
        when the worker dead-lettered it, ``ContractError`` for invalid data or an invalid reply."""
        request, body, reply_type = self._request_of(event, data, correlation_id, timeout)
        return self._requests().call(request, body, reply_type, timeout)

    async def request_async(self, event: EventRef, data: dict, timeout: float = 5.0,
                            correlation_id: str | None = None) -> Event:
        """``request`` for a coroutine: awaits the reply without blocking the event loop."""
        request, body, reply_type = self._request_of(event, data, correlation_id, timeout)
        requester = self._requester
        if requester is None or not requester.alive:  # connecting blocks: not on the event loop
            requester = await asyncio.to_thread(self._requests)
        return await requester.call_async(request, body, reply_type, timeout)

    def request_event(self, request: Event, timeout: float = 5.0, body: bytes | None = None) -> Event:
        """``request`` of an event built already (``eda request`` validates its wire-form input)."""
        _check_timeout(timeout)
        reply_type = request.contract.reply_contract().type
        return self._requests().call(request, encode(request) if body is None else body, reply_type, timeout)

    def _request_of(self, event, data, correlation_id, timeout) -> tuple[Event, bytes, str]:
        """The request validated as ``publish`` validates an event, encoded, and its reply's type."""
        _check_timeout(timeout)
        contract = registry.get(event)
        reply_type = contract.reply_contract().type  # ConfigError: not a request
        loaded, wire = contract.from_python(data)
        request = new_event(contract, loaded, self.source,
                            **({"correlation_id": correlation_id} if correlation_id else {}))
        return request, encode(request, wire), reply_type

    def _requests(self) -> Requester:
        # dict.setdefault is atomic: threads racing to the first request share the one lock stored.
        with self.__dict__.setdefault("_requester_lock", threading.Lock()):
            if self._requester is None or not self._requester.alive:
                self._requester = Requester(self.settings, getattr(self, "_publishing", None))
            return self._requester

    def close_requests(self) -> None:
        """Close the requester's connection; requests still waiting fail with BrokerUnavailable."""
        requester, self._requester = self._requester, None
        if requester is not None:
            requester.close()


def _check_timeout(timeout) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT:
        raise ConfigError(f"a request's timeout is a number of seconds above 0 and at most {MAX_TIMEOUT:.0f}, "
                          f"not {timeout!r}")
