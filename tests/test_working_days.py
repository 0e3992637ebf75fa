"""Working-day deadlines: worked examples, the shipped PRC calendar, the file
loader's refusals, and properties over random calendars and receipt times."""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.clock import FrozenClock
from app.services.working_days import WorkingCalendar, load_calendar
from tests.helpers import bearer, register

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOLIDAY_FILE = Path(__file__).resolve().parent.parent / "config" / "holidays-cn.toml"
END_OF_DAY = time(23, 59, 59, 999999)
PLAIN = WorkingCalendar()  # Monday-Friday, Asia/Shanghai


@pytest.fixture(scope="module")
def cn() -> WorkingCalendar:
    return load_calendar(HOLIDAY_FILE, "Asia/Shanghai")


def sh(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SHANGHAI)


def due_local(calendar: WorkingCalendar, received_at: datetime, days: int = 3) -> datetime:
    return calendar.add_working_days(received_at, days).astimezone(calendar.tz)


def end_of(day: date, tz: ZoneInfo = SHANGHAI) -> datetime:
    return datetime.combine(day, END_OF_DAY, tzinfo=tz)


# --- worked examples, plain Monday-Friday week (March 2026 has no holidays) ---


def test_monday_is_due_end_of_thursday() -> None:
    assert due_local(PLAIN, sh(2026, 3, 2)) == end_of(date(2026, 3, 5))


@pytest.mark.parametrize("received_day", [6, 7, 8], ids=["friday", "saturday", "sunday"])
def test_friday_and_weekend_receipts_are_due_end_of_wednesday(received_day: int) -> None:
    assert due_local(PLAIN, sh(2026, 3, received_day)) == end_of(date(2026, 3, 11))


def test_the_hour_of_receipt_does_not_matter_within_the_local_day() -> None:
    early = PLAIN.add_working_days(sh(2026, 3, 2, 0, 0), 3)
    late = PLAIN.add_working_days(datetime(2026, 3, 2, 23, 59, 59, 999999, tzinfo=SHANGHAI), 3)
    assert early == late


def test_result_is_utc_and_ends_the_local_day() -> None:
    due = PLAIN.add_working_days(sh(2026, 3, 2), 3)
    assert due.tzinfo is UTC
    assert due == datetime(2026, 3, 5, 15, 59, 59, 999999, tzinfo=UTC)


def test_late_sunday_utc_is_monday_morning_in_shanghai() -> None:
    received = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # Sunday UTC, Monday 07:30 Shanghai
    assert received.astimezone(SHANGHAI).date() == date(2026, 3, 2)
    assert due_local(PLAIN, received) == end_of(date(2026, 3, 5))  # Thursday, not Wednesday


def test_sunday_evening_shanghai_is_still_a_weekend_receipt() -> None:
    received = datetime(2026, 3, 1, 15, 59, tzinfo=UTC)  # Sunday 23:59 Shanghai
    assert due_local(PLAIN, received) == end_of(date(2026, 3, 4))  # Wednesday


def test_receipt_in_another_time_zone_is_read_in_the_calendar_zone() -> None:
    received = datetime(2026, 3, 6, 12, 0, tzinfo=ZoneInfo("America/Los_Angeles"))
    # Friday noon in Los Angeles is Saturday 04:00 in Shanghai: still due Wednesday.
    assert due_local(PLAIN, received) == end_of(date(2026, 3, 11))


def test_synthetic_make_up_saturday_counts_and_holiday_is_skipped() -> None:
    calendar = WorkingCalendar(
        holidays=frozenset({date(2026, 3, 10)}),  # Tuesday off
        working_weekends=frozenset({date(2026, 3, 7)}),  # Saturday worked
    )
    # Friday 6th: Sat 7 (1), Mon 9 (2), Tue 10 off, Wed 11 (3).
    assert due_local(calendar, sh(2026, 3, 6)) == end_of(date(2026, 3, 11))
    assert calendar.is_working_day(date(2026, 3, 7))
    assert not calendar.is_working_day(date(2026, 3, 8))
    assert not calendar.is_working_day(date(2026, 3, 10))


def test_naive_receipt_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        PLAIN.add_working_days(datetime(2026, 3, 2, 10, 0), 3)


@pytest.mark.parametrize("days", [0, -1, True])
def test_days_must_be_a_positive_integer(days: int) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        PLAIN.add_working_days(sh(2026, 3, 2), days)


def test_is_working_day_refuses_a_datetime() -> None:
    with pytest.raises(TypeError):
        PLAIN.is_working_day(sh(2026, 3, 2))


# --- working_days_between ---


def test_between_counts_days_after_the_start_day() -> None:
    monday = sh(2026, 3, 2, 9, 0)
    assert PLAIN.working_days_between(monday, sh(2026, 3, 2, 23, 59)) == 0
    assert PLAIN.working_days_between(monday, sh(2026, 3, 3, 0, 0)) == 1  # Tuesday has begun
    assert PLAIN.working_days_between(monday, sh(2026, 3, 9, 0, 1)) == 5  # Tue-Fri + Mon
    assert PLAIN.working_days_between(monday, sh(2026, 2, 27)) == 0  # end before start


def test_between_as_overdue_counter(cn: WorkingCalendar) -> None:
    due = cn.add_working_days(sh(2026, 9, 28), 3)
    assert due.astimezone(SHANGHAI).date() == date(2026, 10, 8)
    assert cn.working_days_between(due, sh(2026, 10, 8, 23, 0)) == 0
    assert cn.working_days_between(due, sh(2026, 10, 9, 8, 0)) == 1
    assert cn.working_days_between(due, sh(2026, 10, 11, 8, 0)) == 2  # Sat 10 is worked


def test_between_refuses_naive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        PLAIN.working_days_between(sh(2026, 3, 2), datetime(2026, 3, 3))


# --- the shipped PRC calendar ---


def test_golden_week_2026_pushes_the_deadline_past_the_holiday(cn: WorkingCalendar) -> None:
    # Mon 28 Sep: Tue 29 (1), Wed 30 (2), 1-7 Oct off, Thu 8 Oct (3).
    assert due_local(cn, sh(2026, 9, 28)) == end_of(date(2026, 10, 8))


def test_make_up_saturday_after_golden_week_counts(cn: WorkingCalendar) -> None:
    # Wed 30 Sep: Thu 8 Oct (1), Fri 9 (2), Sat 10 Oct make-up day (3).
    assert due_local(cn, sh(2026, 9, 30)) == end_of(date(2026, 10, 10))
    # Received during the holiday: the same three days.
    assert due_local(cn, sh(2026, 10, 3)) == end_of(date(2026, 10, 10))


def test_make_up_sunday_before_golden_week_counts(cn: WorkingCalendar) -> None:
    # Fri 18 Sep: Sun 20 Sep make-up (1), Mon 21 (2), Tue 22 (3).
    assert due_local(cn, sh(2026, 9, 18)) == end_of(date(2026, 9, 22))
    assert due_local(PLAIN, sh(2026, 9, 18)) == end_of(date(2026, 9, 23))


def test_spring_festival_2026(cn: WorkingCalendar) -> None:
    # Fri 13 Feb: Sat 14 make-up (1), 15-23 Feb off, Tue 24 (2), Wed 25 (3).
    assert due_local(cn, sh(2026, 2, 13)) == end_of(date(2026, 2, 25))


def test_national_day_2025(cn: WorkingCalendar) -> None:
    # Tue 30 Sep 2025: 1-8 Oct off, Thu 9 (1), Fri 10 (2), Sat 11 make-up (3).
    assert due_local(cn, sh(2025, 9, 30)) == end_of(date(2025, 10, 11))


@pytest.mark.parametrize("year", [2025, 2026])
def test_shipped_years_have_248_working_days(cn: WorkingCalendar, year: int) -> None:
    # 261 weekdays in each year minus the 13 statutory days off: a cheap check
    # that no period was mistyped.
    first = date(year, 1, 1)
    days = [first + timedelta(days=k) for k in range((date(year + 1, 1, 1) - first).days)]
    assert sum(cn.is_working_day(d) for d in days) == 248


@pytest.fixture
def clock() -> FrozenClock:
    # Friday 18 September 2026, 10:00 in Shanghai; Sunday the 20th is a make-up day.
    return FrozenClock(datetime(2026, 9, 18, 2, 0, tzinfo=UTC))


def test_a_request_before_a_make_up_sunday_is_due_a_day_sooner(client, mailbox, sms, clock):
    """The shipped calendar reaches what users are told: received on Friday, a
    request counts Sunday 20 Sep (a make-up working day), Monday and Tuesday."""
    _, session = register(client, mailbox, sms)
    made = client.post(
        "/api/v1/me/requests",
        json={"kind": "deletion", "categories": ["other"]},
        headers=bearer(session["token"]),
    )
    assert made.status_code == 201, made.json
    due = datetime.fromisoformat(made.json["due_at"])
    assert due == end_of(date(2026, 9, 22)).astimezone(UTC)  # Tuesday, not Wednesday


# --- load_calendar refusals ---


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "holidays.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_reads_native_dates(tmp_path: Path) -> None:
    path = write(tmp_path, "holidays = [2026-03-10]\nworking_weekends = [2026-03-07]\n")
    calendar = load_calendar(path, "Asia/Shanghai")
    assert calendar.holidays == {date(2026, 3, 10)}
    assert calendar.working_weekends == {date(2026, 3, 7)}
    assert calendar.tz == SHANGHAI


def test_load_empty_file_is_a_plain_week(tmp_path: Path) -> None:
    calendar = load_calendar(write(tmp_path, ""), "UTC")
    assert calendar.holidays == frozenset()
    assert calendar.working_weekends == frozenset()


def test_holiday_on_a_weekend_is_allowed(tmp_path: Path) -> None:
    calendar = load_calendar(write(tmp_path, "holidays = [2026-03-07]\n"), "Asia/Shanghai")
    assert not calendar.is_working_day(date(2026, 3, 7))


def test_working_weekend_on_a_weekday_is_refused_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, "working_weekends = [2026-03-07, 2026-03-09]\n")
    with pytest.raises(ValueError, match=r"2026-03-09 is a Monday"):
        load_calendar(path, "Asia/Shanghai")


def test_date_in_both_lists_is_refused_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, "holidays = [2026-03-07]\nworking_weekends = [2026-03-07]\n")
    with pytest.raises(ValueError, match=r"2026-03-07 is listed both"):
        load_calendar(path, "Asia/Shanghai")


def test_date_twice_in_one_list_is_refused_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, "holidays = [2026-10-01, 2026-10-02, 2026-10-01]\n")
    with pytest.raises(ValueError, match=r"holidays lists 2026-10-01 twice"):
        load_calendar(path, "Asia/Shanghai")


@pytest.mark.parametrize(
    "entry", ['"2026-10-01"', "2026-10-01T00:00:00", "20261001"], ids=["string", "datetime", "int"]
)
def test_non_date_entries_are_refused(tmp_path: Path, entry: str) -> None:
    path = write(tmp_path, f"holidays = [2026-09-30, {entry}]\n")
    with pytest.raises(ValueError, match="is not a date"):
        load_calendar(path, "Asia/Shanghai")


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "holiday = [2026-10-01]\n")
    with pytest.raises(ValueError, match="unknown key 'holiday'"):
        load_calendar(path, "Asia/Shanghai")


def test_list_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be a list"):
        load_calendar(write(tmp_path, "holidays = 2026-10-01\n"), "Asia/Shanghai")


def test_invalid_toml_and_unknown_zone_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not valid TOML"):
        load_calendar(write(tmp_path, "holidays = [\n"), "Asia/Shanghai")
    with pytest.raises(ValueError, match="unknown time zone"):
        load_calendar(write(tmp_path, ""), "Asia/Atlantis")


def test_constructor_refuses_the_same_mistakes() -> None:
    with pytest.raises(ValueError, match="2026-03-09 is a Monday"):
        WorkingCalendar(working_weekends=frozenset({date(2026, 3, 9)}))
    with pytest.raises(ValueError, match="listed both"):
        WorkingCalendar(
            holidays=frozenset({date(2026, 3, 7)}),
            working_weekends=frozenset({date(2026, 3, 7)}),
        )


# --- properties over random calendars ---

PROPERTY = settings(max_examples=200, deadline=None, database=None)

# Zones for the calendar: the real one, UTC, and zones whose DST changes at
# midnight (Santiago) or at night (Berlin, New York), to stress "end of day".
CALENDAR_ZONES = ["Asia/Shanghai", "UTC", "Europe/Berlin", "America/New_York", "America/Santiago"]
RECEIPT_ZONES = st.one_of(
    st.sampled_from(
        [UTC, SHANGHAI, ZoneInfo("America/Los_Angeles"), ZoneInfo("Pacific/Kiritimati")]
    ),
    st.integers(-12 * 4, 14 * 4).map(lambda q: timezone(timedelta(minutes=15 * q))),
)
received_times = st.datetimes(
    min_value=datetime(2023, 1, 1), max_value=datetime(2029, 12, 31), timezones=RECEIPT_ZONES
)
day_counts = st.integers(min_value=1, max_value=25)


@st.composite
def calendar_near(draw: st.DrawFn, anchor: date) -> WorkingCalendar:
    """A random calendar whose holidays and make-up days cluster around `anchor`,
    so that they actually meet the deadlines under test (like Golden Week)."""
    holidays: set[date] = set()
    for offset, length in draw(
        st.lists(st.tuples(st.integers(-10, 90), st.integers(1, 12)), max_size=8)
    ):
        holidays.update(anchor + timedelta(days=offset + k) for k in range(length))
    saturday = anchor + timedelta(days=5 - anchor.weekday())
    picks = draw(st.lists(st.tuples(st.integers(-2, 13), st.booleans()), max_size=8))
    weekends = {saturday + timedelta(weeks=w, days=int(sunday)) for w, sunday in picks}
    return WorkingCalendar(
        holidays=frozenset(holidays),
        working_weekends=frozenset(weekends - holidays),
        tz=ZoneInfo(draw(st.sampled_from(CALENDAR_ZONES))),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[WorkingCalendar, datetime]:
    received_at = draw(received_times)
    return draw(calendar_near(received_at.date())), received_at


def expected_working(calendar: WorkingCalendar, day: date) -> bool:
    """Oracle written from the definition, independently of the implementation."""
    if day in calendar.working_weekends:
        return True
    return day.weekday() < 5 and day not in calendar.holidays


@PROPERTY
@given(scenarios(), day_counts)
def test_due_date_properties(scenario: tuple[WorkingCalendar, datetime], days: int) -> None:
    calendar, received_at = scenario
    due = calendar.add_working_days(received_at, days)
    receipt_day = received_at.astimezone(calendar.tz).date()
    due_day = due.astimezone(calendar.tz).date()

    assert due.tzinfo is UTC
    # (a) after receipt
    assert due > received_at
    # (b) on a working day, at its very end
    assert calendar.is_working_day(due_day)
    assert expected_working(calendar, due_day)
    assert due.astimezone(calendar.tz).time() == END_OF_DAY
    assert (due + timedelta(microseconds=1)).astimezone(calendar.tz).date() == due_day + timedelta(
        days=1
    )
    # (c) exactly `days` working days in (receipt day, due day]
    span = [receipt_day + timedelta(days=k) for k in range(1, (due_day - receipt_day).days + 1)]
    assert sum(expected_working(calendar, d) for d in span) == days
    # ... and working_days_between agrees, turning to days+1 only if the next day is worked
    assert calendar.working_days_between(received_at, due) == days
    after = calendar.working_days_between(received_at, due + timedelta(microseconds=1))
    assert after == days + expected_working(calendar, due_day + timedelta(days=1))


@PROPERTY
@given(st.data(), received_times, received_times, day_counts)
def test_later_receipt_never_gives_earlier_due_date(
    data: st.DataObject, first: datetime, second: datetime, days: int
) -> None:
    # (d) monotonic; compare instants in UTC (same-tzinfo comparison uses wall time).
    earlier, later = sorted([first, second], key=lambda moment: moment.astimezone(UTC))
    calendar = data.draw(calendar_near(earlier.date()))
    assert calendar.add_working_days(earlier, days) <= calendar.add_working_days(later, days)


@PROPERTY
@given(scenarios(), st.integers(min_value=0, max_value=60), day_counts, day_counts)
def test_adding_n_then_m_equals_adding_n_plus_m(
    scenario: tuple[WorkingCalendar, datetime], offset: int, n: int, m: int
) -> None:
    # (e) from the end of a working day, working days compose.
    calendar, received_at = scenario
    day = calendar.local_date(received_at) + timedelta(days=offset)
    while not calendar.is_working_day(day):
        day += timedelta(days=1)
    start = calendar.end_of_day(day)
    after_n = calendar.add_working_days(start, n)
    assert calendar.add_working_days(after_n, m) == calendar.add_working_days(start, n + m)
    # A due date is itself a working day's end, so deadlines chain from any receipt too.
    chained = calendar.add_working_days(calendar.add_working_days(received_at, n), m)
    assert chained == calendar.add_working_days(received_at, n + m)


@PROPERTY
@given(scenarios(), st.integers(min_value=0, max_value=120))
def test_is_working_day_matches_the_definition(
    scenario: tuple[WorkingCalendar, datetime], offset: int
) -> None:
    calendar, received_at = scenario
    day = received_at.date() + timedelta(days=offset - 10)
    assert calendar.is_working_day(day) == expected_working(calendar, day)


@PROPERTY
@given(scenarios())
def test_written_calendar_loads_back_unchanged(scenario: tuple[WorkingCalendar, datetime]) -> None:
    calendar, _ = scenario

    def toml_list(days: frozenset[date]) -> str:
        return "[" + ", ".join(d.isoformat() for d in sorted(days)) + "]"

    text = (
        f"holidays = {toml_list(calendar.holidays)}\n"
        f"working_weekends = {toml_list(calendar.working_weekends)}\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "calendar.toml"
        path.write_text(text, encoding="utf-8")
        assert load_calendar(path, calendar.tz.key) == calendar
