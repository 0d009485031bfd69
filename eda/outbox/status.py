"""``eda outbox status``: pending rows and the oldest one's age; unhealthy past a threshold (a monitoring check)."""


def age_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def describe(where: str, count: int, age: float | None, max_age: float) -> tuple[str, str | None]:
    """The status line, and the problem (None when healthy): the oldest pending row older than ``max_age``."""
    if not count:
        return f"outbox {where}: nothing pending", None
    line = f"outbox {where}: {count} pending, the oldest added {age_text(age or 0.0)} ago"
    if age is not None and age > max_age:
        return line, (f"the oldest pending row is {age_text(age)} old, more than {age_text(max_age)} "
                      f"(is `eda outbox relay` running, and the broker reachable?)")
    return line, None


def as_json(where: str, count: int, age: float | None, problem: str | None) -> dict:
    return {"outbox": where, "pending": count, "oldest_age_seconds": age, "healthy": problem is None,
            "problem": problem}


def check(settings, max_age: float, json_output: bool = False) -> tuple[str, str | None]:
    """What ``eda outbox status`` prints, and the problem that makes it exit 1 (None when healthy)."""
    import json

    from eda.outbox.outbox import Outbox

    outbox = Outbox(settings)
    count, age = outbox.pending()
    line, problem = describe(outbox.where, count, age, max_age)
    return (json.dumps(as_json(outbox.where, count, age, problem)) if json_output else line), problem
