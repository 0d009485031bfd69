"""``eda outbox status``: pending rows and the oldest one's age; unhealthy past a threshold (a monitoring check).

A scheduled row is pending once due (its age counts from its due time); those not due yet are counted apart."""


def age_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def describe(where: str, count: int, age: float | None, max_age: float, later: int = 0) -> tuple[str, str | None]:
    """The status line, and the problem (None when healthy): the oldest pending row older than ``max_age``."""
    scheduled = f"; {later} scheduled for later" if later else ""
    if not count:
        return f"outbox {where}: nothing pending{scheduled}", None
    line = f"outbox {where}: {count} pending, the oldest waiting {age_text(age or 0.0)}{scheduled}"
    if age is not None and age > max_age:
        return line, (f"the oldest pending row is {age_text(age)} old, more than {age_text(max_age)} "
                      f"(is `eda outbox relay` running, and the broker reachable?)")
    return line, None


def as_json(where: str, count: int, age: float | None, problem: str | None, later: int = 0) -> dict:
    return {"outbox": where, "pending": count, "oldest_age_seconds": age, "scheduled_later": later,
            "healthy": problem is None, "problem": problem}


def check(settings, max_age: float, json_output: bool = False) -> tuple[str, str | None]:
    """What ``eda outbox status`` prints, and the problem that makes it exit 1 (None when healthy)."""
    import json

    from eda.outbox.outbox import Outbox

    outbox = Outbox(settings)
    count, age = outbox.pending()
    later = outbox.later()
    line, problem = describe(outbox.where, count, age, max_age, later)
    return (json.dumps(as_json(outbox.where, count, age, problem, later)) if json_output else line), problem
