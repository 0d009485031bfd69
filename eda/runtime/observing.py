"""Telling middleware's observers (``on_ready``, ``on_outcome``...) what happened, on the I/O thread.

An observer only watches: one that raises is logged and passed over, so that it never changes what
happens to an event (an exception after the ack moved the event again: a second handling) nor ends
the worker's session (an exception out of the I/O loop reconnected, every event in flight redelivered).
"""

import logging

log = logging.getLogger("eda.middleware")


def tell(hooks, *args) -> None:
    """Call each hook with ``args``; an exception of one is logged with its traceback, and the next is called."""
    for hook in hooks:
        try:
            hook(*args)
        except Exception:  # noqa: BLE001 - an observer's failure is its own, never the event's
            owner = getattr(hook, "__self__", None)
            kind = type(owner) if owner is not None else None
            name = f"{kind.__module__}.{kind.__qualname__}.{hook.__name__}" if kind else repr(hook)
            log.exception("middleware observer %s failed; the worker goes on", name, extra={"observer": name})
