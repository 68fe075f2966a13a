"""When a job's ticks fall: EventBridge Scheduler's `rate(...)` and `cron(...)` expressions, UTC.

The local scheduler and `eventforge jobs` compute ticks here; the cloud leaves it to EventBridge
Scheduler. A rate's ticks fall on whole multiples of its interval since the epoch (every minute
at :00, every hour on the hour), so a tick's time names it whoever sends it. A cron expression
has EventBridge's six fields (minutes hours day-of-month month day-of-week year, with `?`, `L`
and `#`, days of the week 1-7 from Sunday); `W` is not supported locally.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cronsim import CronSim, CronSimError

from eventforge.topology import schedule_problem

_RATE = re.compile(r"^rate\((?P<value>\d+) (?P<unit>minute|hour|day)s?\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_YEAR = re.compile(r"^\d{4}(-\d{4})?$")
_HORIZON_YEARS = 50
"""How far a tick is looked for, as cronsim does forward."""


@dataclass(frozen=True)
class Schedule:
    """One schedule expression, able to say when its ticks fall."""

    expression: str
    interval: timedelta | None
    """A rate's interval; None for a cron expression."""
    cron: str | None = None
    """The five standard cron fields EventBridge's first five mean."""
    years: tuple[tuple[int, int], ...] = ()
    """Ranges of years the ticks fall in (inclusive); empty for every year."""

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        """The schedule of an expression; raises ValueError if it is not one both schedulers
        share, or uses what only EventBridge supports."""
        problem = schedule_problem(expression)
        if problem is not None:
            raise ValueError(problem)
        rate = _RATE.match(expression)
        if rate is not None:
            seconds = int(rate["value"]) * _UNIT_SECONDS[rate["unit"]]
            return cls(expression, timedelta(seconds=seconds))
        fields = expression[len("cron(") : -1].split(" ")
        minutes, hours, day, month, weekday, year = fields
        if "W" in day:
            raise ValueError(f"schedule {expression}: W (nearest weekday) is EventBridge-only")
        cron = " ".join((minutes, hours, _any(day), month, _weekdays(_any(weekday))))
        try:
            CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as error:
            raise ValueError(f"schedule {expression}: {error}") from None
        return cls(expression, None, cron=cron, years=_years(expression, year))

    def previous(self, now: datetime) -> datetime | None:
        """The latest tick at or before `now` (None if there is none within 50 years)."""
        if self.interval is not None:
            step = int(self.interval.total_seconds())
            return datetime.fromtimestamp(int(now.timestamp()) // step * step, UTC)
        # Reverse iteration starts strictly before its start: a second on, `now` itself counts.
        return self._first(now.replace(microsecond=0) + timedelta(seconds=1), reverse=True)

    def next(self, after: datetime) -> datetime | None:
        """The first tick after `after` (None if there is none within 50 years)."""
        if self.interval is not None:
            step = int(self.interval.total_seconds())
            return datetime.fromtimestamp((int(after.timestamp()) // step + 1) * step, UTC)
        return self._first(after, reverse=False)

    def _first(self, start: datetime, *, reverse: bool) -> datetime | None:
        assert self.cron is not None
        ticks = CronSim(self.cron, start.astimezone(UTC), reverse=reverse)
        try:
            for tick in ticks:
                if abs(tick.year - start.year) > _HORIZON_YEARS:
                    return None
                if not self.years or any(low <= tick.year <= high for low, high in self.years):
                    return tick
        except OverflowError:  # iterating past year 1 or 9999
            return None
        return None


def format_tick(moment: datetime) -> str:
    """A tick's time as EventBridge Scheduler writes it (`2026-12-07T23:40:00Z`); milliseconds
    when it has a fraction of a second (a tick fired by hand)."""
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return moment.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def _any(field: str) -> str:
    return "*" if field == "?" else field


def _weekdays(field: str) -> str:
    """EventBridge's days of the week (1 = Sunday) in cron's numbering (0 = Sunday)."""

    def shift(part: str) -> str:
        base, slash, step = part.partition("/")
        day, hash_sign, nth = base.partition("#")
        return re.sub(r"\d+", lambda m: str(int(m[0]) - 1), day) + hash_sign + nth + slash + step

    return ",".join(shift(part) for part in field.split(","))


def _years(expression: str, field: str) -> tuple[tuple[int, int], ...]:
    if field == "*":
        return ()
    ranges = []
    for part in field.split(","):
        if not _YEAR.match(part):
            raise ValueError(f"schedule {expression}: years must be *, YYYY or YYYY-YYYY lists")
        low, _, high = part.partition("-")
        ranges.append((int(low), int(high or low)))
    return tuple(ranges)
