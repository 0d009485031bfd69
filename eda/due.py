"""Due times of scheduled events: ``at=`` (an aware datetime) or ``delay=`` (a timedelta or seconds),
checked once for every way in (``Producer.publish``, ``Outbox.add``, ``ctx.publish``)."""

import time
import uuid
from datetime import datetime, timedelta, timezone

from eda.errors import ScheduleError


def due_time(at: datetime | None = None, delay: timedelta | float | None = None) -> float | None:
    """The due time as Unix seconds, or None when neither is given (publish at once). A time in the past
    is due at once; a naive datetime, a negative delay or both arguments are a ScheduleError."""
    if at is not None and delay is not None:
        raise ScheduleError("give either at= (a datetime) or delay= (a timedelta), not both")
    if at is not None:
        if not isinstance(at, datetime):
            raise ScheduleError(f"at= takes a datetime with a time zone, not {type(at).__name__} {at!r:.60}")
        if at.tzinfo is None or at.utcoffset() is None:
            raise ScheduleError(f"at={at.isoformat()} is a naive datetime: give it a time zone "
                                f"(datetime(..., tzinfo=timezone.utc), or datetime.now(timezone.utc) + ...)")
        return at.timestamp()
    if delay is None:
        return None
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, (int, float)) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise ScheduleError(f"delay= takes a timedelta (or seconds), not {type(delay).__name__} {delay!r:.60}")
    if not seconds >= 0:  # NaN too
        raise ScheduleError(f"delay= must not be negative (got {seconds:g}s); at= in the past is due at once")
    return time.time() + seconds


def rfc3339(seconds: float) -> str:
    """A due time as the CloudEvents ``time`` attribute and ``eda schedule list`` write it (UTC, milliseconds)."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_IDS = uuid.UUID("5f1d0c5e-6b2a-4f4e-9a57-3f4c2d8e0a11")  # eda's namespace for the ids it derives


def derived_id(*parts: str) -> str:
    """A stable event id (a UUID 5) for what must be written once however often it is computed: a
    handler's delayed reaction (worker, handled event id, index), a recurring schedule's tick."""
    return str(uuid.uuid5(_IDS, "\x1f".join(parts)))
