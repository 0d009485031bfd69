"""``eda outbox status``: pending rows and the oldest one's age; unhealthy past a threshold (a monitoring check).

A scheduled row is pending once due (its age counts from its due time); those not due yet are counted apart.
One the broker refused (no queue takes its type) stays pending, overdue, until a queue takes it."""


def age_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def describe(where: str, count: int, age: float | None, max_age: float, later: int = 0,
             overdue: tuple[int, float | None] = (0, None)) -> tuple[str, str | None]:
    """The status line, and the problem (None when healthy): the oldest pending row older than ``max_age``.
    ``overdue``: (scheduled rows among the pending that the broker refused, seconds the oldest is late)."""
    scheduled = f"; {later} scheduled for later" if later else ""
    if not count:
        return f"outbox {where}: nothing pending{scheduled}", None
    refused, late = overdue
    if refused:  # a refused row stays pending: the relay tries it again every 30 s
        scheduled = f"; {refused} scheduled overdue by up to {age_text(late or 0.0)}, refused by the broker{scheduled}"
    line = f"outbox {where}: {count} pending, the oldest waiting {age_text(age or 0.0)}{scheduled}"
    if age is not None and age > max_age:
        why = ("does a queue take its type? `eda topology declare` binds the workers' queues" if refused else
               "is `eda outbox relay` running, and the broker reachable?")
        return line, f"the oldest pending row is {age_text(age)} old, more than {age_text(max_age)} ({why})"
    return line, None


def as_json(where: str, count: int, age: float | None, problem: str | None, later: int = 0,
            overdue: tuple[int, float | None] = (0, None)) -> dict:
    return {"outbox": where, "pending": count, "oldest_age_seconds": age, "scheduled_later": later,
            "overdue": overdue[0], "overdue_seconds": overdue[1], "healthy": problem is None, "problem": problem}


def check(settings, max_age: float, json_output: bool = False) -> tuple[str, str | None]:
    """What ``eda outbox status`` prints, and the problem that makes it exit 1 (None when healthy)."""
    import json

    from eda.errors import NoOutbox
    from eda.outbox.outbox import Outbox

    try:
        outbox = Outbox(settings, create=False)
    except NoOutbox as exc:  # a monitoring check run where the outbox is not: unhealthy, not "nothing pending"
        return (json.dumps({"outbox": None, "healthy": False, "problem": str(exc)}) if json_output else
                "outbox: none"), str(exc)
    count, age = outbox.pending()
    later, overdue = outbox.later(), outbox.overdue()
    line, problem = describe(outbox.where, count, age, max_age, later, overdue)
    return (json.dumps(as_json(outbox.where, count, age, problem, later, overdue)) if json_output else line), problem
