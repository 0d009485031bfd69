"""The requests a requester has in flight: a future per request id, completed exactly once.

Callers (threads, coroutines) add their request and wait on its future; the requester's I/O thread
settles it with the reply that answers it, or with an error (a refusal, a failure reply, a lost
connection). A caller that stops waiting (its timeout) discards its request, so a late reply finds
no one and is dropped; an asyncio caller's cancelled future is never completed.
"""

import threading
from concurrent.futures import Future, InvalidStateError

from eda.contracts.envelope import Event
from eda.errors import ContractError


class PendingRequest:
    """One request in flight: the request, the type its reply must have, and the caller's future."""

    __slots__ = ("request", "reply_type", "future")

    def __init__(self, request: Event, reply_type: str):
        self.request, self.reply_type, self.future = request, reply_type, Future()


class PendingRequests:
    """The requests in flight by id; each future is completed once: by its reply, a refusal, or a loss."""

    def __init__(self):
        self._lock = threading.Lock()
        self._waiting: dict[str, PendingRequest] = {}

    def add(self, request: Event, reply_type: str) -> Future:
        waiting = PendingRequest(request, reply_type)
        with self._lock:
            if request.id in self._waiting:
                raise ContractError(f"{request.type}: a request with id {request.id} is in flight already")
            self._waiting[request.id] = waiting
        return waiting.future

    def __contains__(self, request_id) -> bool:
        return request_id in self._waiting

    def __len__(self) -> int:
        return len(self._waiting)

    def get(self, request_id: str) -> PendingRequest | None:
        return self._waiting.get(request_id)

    def discard(self, request_id: str) -> None:
        """Forget a request whose caller stopped waiting (its timeout): a late reply is dropped."""
        with self._lock:
            self._waiting.pop(request_id, None)

    def settle(self, request_id: str, reply: Event | None = None, error: BaseException | None = None) -> bool:
        """Complete a request's future with its reply or an error; False when no caller waits for it
        (it timed out, or was settled already)."""
        with self._lock:
            waiting = self._waiting.pop(request_id, None)
        if waiting is None:
            return False
        try:
            if error is not None:
                waiting.future.set_exception(error)
            else:
                waiting.future.set_result(reply)
        except InvalidStateError:  # cancelled: an asyncio caller's timeout won the race
            return False
        return True

    def fail_all(self, error: BaseException) -> None:
        with self._lock:
            ids = list(self._waiting)
        for request_id in ids:
            self.settle(request_id, error=error)
