"""Recurring schedules: an event published on every tick of a cron expression, declared in the app's
code as Celery beat's ``beat_schedule`` is (``eda.schedule``), and published by ``eda outbox relay``.

    eda.schedule("0 9 * * MON-FRI", "reminder.due", {"kind": "daily"}, name="daily-reminder",
                 timezone="Europe/Paris")

Each relay writes a schedule's ticks as scheduled rows of the outbox: the next tick ahead, so that
one falling due while no relay runs is published as soon as one is back (late, not lost), and any tick
that fell due since the relay's previous look (a tick every second outruns a busy loop). A tick's
event id is derived from the schedule's name and the tick, and a scheduled id is written once: however
many relays run, one event per tick. Cron expressions are evaluated by cronsim (Debian cron's
semantics, time zones and daylight saving time included; a sixth field first is seconds).
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from eda.contracts import registry
from eda.contracts.building import python_event
from eda.contracts.envelope import check_attribute, encode
from eda.errors import ContractError, ScheduleError, UnknownEvent
from eda.due import derived_id, rfc3339

log = logging.getLogger("eda.outbox")

NICKNAMES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
             "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
MAX_CATCH_UP = 100  # ticks one look writes at most per schedule (a relay that stalled longer skips the rest)


@dataclass(frozen=True)
class Recurring:
    """A recurring schedule: ``event`` with ``data`` (Python values, snake_case keys) on every tick of
    ``cron`` in ``timezone``, its events' source ``source``."""

    name: str
    cron: str
    event: str
    data: dict = field(default_factory=dict, compare=False, hash=False)
    timezone: str = "UTC"
    source: str = ""

    @property
    def zone(self):
        return dt_timezone.utc if self.timezone == "UTC" else ZoneInfo(self.timezone)

    def ticks_after(self, seconds: float):
        """The ticks after ``seconds`` (Unix seconds), in order, as Unix seconds."""
        for tick in CronSim(NICKNAMES.get(self.cron.strip().lower(), self.cron),
                            datetime.fromtimestamp(seconds, self.zone)):
            yield tick.timestamp()

    def next_after(self, seconds: float) -> float:
        return next(self.ticks_after(seconds))

    def event_at(self, tick: float) -> tuple:
        """The tick's ``(event, body, due)``: its id derived from the name and the tick (the same in every
        relay), its time the tick. Raises ContractError where the data breaks the event's contract."""
        event, wire = python_event(self.event, self.data, self.source)
        event.id = event.correlation_id = derived_id("eda.schedule", self.name, rfc3339(tick))
        event.time = rfc3339(tick)
        return event, encode(event, wire), tick

    def explain(self) -> str:
        """The schedule in words (cronsim's), e.g. ``At 09:00 every day``."""
        return CronSim(NICKNAMES.get(self.cron.strip().lower(), self.cron), datetime.now(self.zone)).explain()


_DECLARED: dict[str, Recurring] = {}


def schedule(cron: str, event, data: dict | None = None, *, name: str | None = None, timezone: str = "UTC",
             source: str | None = None) -> Recurring:
    """Declare a recurring schedule: ``event`` (type, CLI name or contract class) with ``data`` on every
    tick of ``cron`` (five fields, or six with seconds first, or @daily, @hourly...) in ``timezone`` (an
    IANA name, default UTC). ``name`` (default: the event) identifies it: its ticks' event ids derive
    from it. Declare it in a module the app imports (``--app``, or a module of your workers' or
    contracts' package); ``eda outbox relay`` publishes the ticks. A bad expression, time zone or name
    is a ScheduleError now; the data is validated when a relay starts."""
    event_name = event if isinstance(event, str) else registry.get(event).type  # a contract class: registered now
    name = name or event_name
    try:
        check_attribute("schedule name", name)
    except ContractError as exc:
        raise ScheduleError(f"eda.schedule: {exc}") from None
    if not isinstance(timezone, str):
        raise ScheduleError(f"eda.schedule {name!r}: timezone is an IANA name like 'Europe/Paris', not {timezone!r:.60}")
    declared = Recurring(name, cron, event_name, dict(data or {}), timezone,
                         source or f"eda/schedule/{name}")
    try:
        declared.zone
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"eda.schedule {name!r}: unknown time zone {timezone!r} (an IANA name like "
                            f"'Europe/Paris')") from None
    try:
        declared.next_after(0.0)
    except (CronSimError, TypeError, AttributeError) as exc:
        raise ScheduleError(f"eda.schedule {name!r}: bad cron expression {cron!r}: {exc or 'cannot be read'} "
                            f"(five fields 'minute hour day month weekday', six with seconds first, or "
                            f"{', '.join(sorted(NICKNAMES))})") from None
    except StopIteration:
        raise ScheduleError(f"eda.schedule {name!r}: cron expression {cron!r} never ticks") from None
    known = _DECLARED.get(name)
    if known is not None and (known != declared or known.data != declared.data):
        raise ScheduleError(f"eda.schedule: two recurring schedules are named {name!r} ({known.cron!r} -> "
                            f"{known.event} and {cron!r} -> {event_name}); give each its own name=")
    _DECLARED[name] = declared
    return declared


def declared() -> list[Recurring]:
    """The recurring schedules declared so far, by name."""
    return [_DECLARED[name] for name in sorted(_DECLARED)]


def of_app() -> list[Recurring]:
    """The app's recurring schedules (its modules imported first), each checked against its event's
    contract: a schedule whose data the contract refuses is a ScheduleError naming it."""
    from eda import app

    app.load()
    schedules = declared()
    for recurring in schedules:
        try:
            recurring.event_at(0.0)
        except (ContractError, UnknownEvent) as exc:
            raise ScheduleError(f"recurring schedule {recurring.name!r}: {exc}") from None
    return schedules


def forget(name: str) -> None:
    """Remove a declared schedule (for tests that declare their own)."""
    _DECLARED.pop(name, None)


class Ticker:
    """A relay's view of the recurring schedules: which ticks to write now (``due``), remembered once
    written (``written``)."""

    def __init__(self, schedules, now: float):
        self.schedules = list(schedules)
        self._last = {s.name: now for s in self.schedules}  # ticks up to here are written (or were skipped)

    def due(self, now: float) -> list[tuple[Recurring, float]]:
        """The ticks to write: those after the last written, up to ``now``, and the first after ``now``."""
        ticks = []
        for recurring in self.schedules:
            last, count = self._last[recurring.name], 0
            if last > now:
                continue  # the next tick ahead is written already
            for tick in recurring.ticks_after(last):
                ticks.append((recurring, tick))
                count += 1
                if tick > now:
                    break
                if count == MAX_CATCH_UP:
                    log.warning("recurring schedule %s: more than %d ticks fell due since the last look; the "
                                "rest are skipped", recurring.name, MAX_CATCH_UP, extra={"schedule": recurring.name})
                    ticks.append((recurring, recurring.next_after(now)))
                    break
        return ticks

    def written(self, ticks) -> None:
        for recurring, tick in ticks:
            self._last[recurring.name] = max(self._last[recurring.name], tick)

    def resume(self, now: float) -> None:
        """Write from ``now`` on: this relay took the outbox over (a standby), or came back to it (a lost
        database). The ticks before were written by it or by another relay, and may be published and
        deleted since: written again, their unique ids would no longer stop them. The one tick written
        ahead covers the first that fell due meanwhile; the others are skipped (README)."""
        self._last = {s.name: max(self._last[s.name], now) for s in self.schedules}
