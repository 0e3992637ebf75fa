"""Working-day arithmetic for data-subject request deadlines.

Requests (access, export, deletion, cancellation...) must be answered within a
number of *working* days, and in China the working week is not simply Monday to
Friday: public holidays take weekdays off, and make-up working days (调休) turn
some Saturdays and Sundays into working days. This module is pure: no Flask, no
database, no clock. The operator keeps the calendar in a TOML file, one year at
a time.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIME_ZONE = "Asia/Shanghai"
_ONE_DAY = timedelta(days=1)
_ONE_MICROSECOND = timedelta(microseconds=1)
_SATURDAY = 5
_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
_CALENDAR_KEYS = ("holidays", "working_weekends")


def _is_weekend(day: date) -> bool:
    return day.weekday() >= _SATURDAY


def _require_plain_date(value: object, where: str) -> date:
    # datetime is a subclass of date, but a datetime never equals a date, so a
    # datetime in a set of days would silently never match.
    if not isinstance(value, date) or isinstance(value, datetime):
        raise ValueError(f"{where}: {value!r} is not a date (write it as YYYY-MM-DD, unquoted)")
    return value


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {moment.isoformat()}")


@dataclass(frozen=True)
class WorkingCalendar:
    """Which local dates are working days, and in which time zone a day is read.

    A day is a working day when it is a Monday-Friday not listed in `holidays`,
    or a Saturday/Sunday listed in `working_weekends` (make-up working day).
    Holidays that fall on a weekend are allowed and change nothing.
    """

    holidays: frozenset[date] = frozenset()
    working_weekends: frozenset[date] = frozenset()
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIME_ZONE))

    def __post_init__(self) -> None:
        holidays = frozenset(_require_plain_date(d, "holidays") for d in self.holidays)
        weekends = frozenset(
            _require_plain_date(d, "working_weekends") for d in self.working_weekends
        )
        for day in sorted(weekends):
            if not _is_weekend(day):
                name = _WEEKDAY_NAMES[day.weekday()]
                raise ValueError(
                    f"working_weekends: {day.isoformat()} is a {name}, not a Saturday or Sunday"
                )
        both = sorted(holidays & weekends)
        if both:
            raise ValueError(
                f"{both[0].isoformat()} is listed both as a holiday and as a working weekend"
            )
        object.__setattr__(self, "holidays", holidays)
        object.__setattr__(self, "working_weekends", weekends)

    def is_working_day(self, day: date) -> bool:
        """Whether this local calendar date is a working day."""
        if isinstance(day, datetime):
            raise TypeError("is_working_day takes a date; convert the datetime to local time first")
        if day in self.working_weekends:
            return True
        return not _is_weekend(day) and day not in self.holidays

    def local_date(self, moment: datetime) -> date:
        """The calendar date of an aware instant, read in the calendar's time zone."""
        _require_aware(moment, "moment")
        return moment.astimezone(self.tz).date()

    def end_of_day(self, day: date) -> datetime:
        """The last microsecond (UTC) of a local date: 23:59:59.999999 local time.

        Computed as "start of the next local day minus 1 µs" so that a DST
        change around midnight (not in Asia/Shanghai, but in other zones) still
        gives the true end of the day.
        """
        next_start = datetime.combine(day + _ONE_DAY, time.min, tzinfo=self.tz)
        return next_start.astimezone(UTC) - _ONE_MICROSECOND

    def add_working_days(self, received_at: datetime, days: int) -> datetime:
        """The due moment (aware, UTC) of a request received at `received_at`.

        Rule: the local date of receipt (in the calendar's time zone) is day 0
        and never counts, whatever the hour and whether or not it is a working
        day. Count forward over the following dates, counting only working
        days; the request is due at the end (23:59:59.999999 local time) of the
        `days`-th working day. So with days=3 and no holidays: received Monday
        -> due end of Thursday; received Friday, Saturday or Sunday -> due end
        of Wednesday. Holidays are skipped and make-up weekends count.
        Why day 0 is skipped: a request arriving at 17:55 must not lose a day.
        """
        _require_aware(received_at, "received_at")
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise ValueError(f"days must be a positive integer, got {days!r}")
        day = self.local_date(received_at)
        counted = 0
        while counted < days:
            day += _ONE_DAY
            if self.is_working_day(day):
                counted += 1
        return self.end_of_day(day)

    def working_days_between(self, start: datetime, end: datetime) -> int:
        """How many working days have started, fully or partly, after `start`'s day, by `end`.

        Precisely: the number of working local dates D with
        local_date(start) < D <= local_date(end). Like add_working_days, the
        start's own date is day 0 and never counts, so
        working_days_between(r, add_working_days(r, n)) == n, and one
        microsecond later it becomes n + 1 if the next day is a working day.
        Returns 0 when `end` is on or before `start`'s date (nothing elapsed).
        For "overdue by N working days" call it with (due, now).
        """
        _require_aware(start, "start")
        _require_aware(end, "end")
        first = self.local_date(start) + _ONE_DAY
        last = self.local_date(end)
        count = 0
        day = first
        while day <= last:
            if self.is_working_day(day):
                count += 1
            day += _ONE_DAY
        return count


def _read_dates(document: dict[str, object], key: str, path: Path) -> list[date]:
    raw = document.get(key, [])
    if not isinstance(raw, list):
        raise ValueError(f"{path}: {key} must be a list of dates, got {raw!r}")
    days: list[date] = []
    seen: set[date] = set()
    for entry in raw:
        day = _require_plain_date(entry, f"{path}: {key}")
        if day in seen:
            raise ValueError(f"{path}: {key} lists {day.isoformat()} twice")
        seen.add(day)
        days.append(day)
    return days


def load_calendar(path: Path, tz: str = DEFAULT_TIME_ZONE) -> WorkingCalendar:
    """Read the operator's holiday file; refuse anything that could silently shift a deadline.

    The file has `holidays = [YYYY-MM-DD, ...]` and
    `working_weekends = [YYYY-MM-DD, ...]` as TOML native dates. Unknown keys
    (a typo would otherwise leave the calendar empty), quoted or timed
    entries, a working weekend that is not a Saturday or Sunday, and a date
    listed twice (in one list or across both) are errors naming the entry.
    """
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc
    with path.open("rb") as handle:
        try:
            document = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    unknown = sorted(set(document) - set(_CALENDAR_KEYS))
    if unknown:
        raise ValueError(
            f"{path}: unknown key {unknown[0]!r} (expected {' and '.join(_CALENDAR_KEYS)})"
        )
    holidays = _read_dates(document, "holidays", path)
    weekends = _read_dates(document, "working_weekends", path)
    try:
        return WorkingCalendar(frozenset(holidays), frozenset(weekends), zone)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
