"""The fast next-fire search gives exactly the answers of the former one, a step-by-step walk (kept here as the oracle).

The former search walked every match from two hours before ``after``'s wall clock (about 7,200
steps for a 6-field cron); the current one starts at ``after``'s wall clock and looks back only in
the first pass of a repeated hour. Instants are drawn around the zones' real clock changes (found
by scanning the zone), including 30-minute (Lord Howe) and 2-hour (Troll) shifts and a skipped day
(Apia, 2011).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from refactorbot_slice_scheduling.schedules import _checked, _wall_clock, count_cron, last_cron, next_cron

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Antarctica/Troll",
    "Pacific/Apia",
    "America/St_Johns",
    "Europe/Dublin",
    "Asia/Kolkata",
]


# -- the former implementation, unchanged: the oracle --------------------------------------------------

_HORIZON = timedelta(days=366 * 5)


def _iterator(expr: str, start: datetime) -> Any:
    from croniter import croniter  # type: ignore[import-untyped]

    parts = expr.split()
    dom, dow = parts[-3], parts[-1]
    day_or = not (dom.startswith("*") or dow.startswith("*"))
    return croniter(expr, start, second_at_beginning=True, day_or=day_or, max_years_between_matches=6)


def _after_gap(naive: datetime, where: ZoneInfo) -> datetime:
    probe = naive
    while True:
        probe += timedelta(minutes=1)
        aware = probe.replace(tzinfo=where, fold=0)
        if aware.astimezone(UTC).astimezone(where).replace(tzinfo=None) == probe:
            return aware


def _instants(naive: datetime, where: ZoneInfo, *, wall: bool) -> list[datetime]:
    first = naive.replace(tzinfo=where, fold=0)
    second = naive.replace(tzinfo=where, fold=1)
    real_first = first.astimezone(UTC).astimezone(where).replace(tzinfo=None) == naive
    real_second = second.astimezone(UTC).astimezone(where).replace(tzinfo=None) == naive
    if not real_first and not real_second:
        return [_after_gap(naive, where).astimezone(UTC)] if wall else []
    if wall or first.utcoffset() == second.utcoffset():
        return [first.astimezone(UTC)]
    return [first.astimezone(UTC), second.astimezone(UTC)]


def _walk(expr: str, start: datetime, where: ZoneInfo, after: datetime, *, wall: bool) -> datetime | None:
    it = _iterator(expr, start)
    limit = start + _HORIZON
    best: datetime | None = None
    while True:
        try:
            candidate: datetime = it.get_next(datetime)
        except Exception:
            return best
        if candidate > limit:
            return best
        instants = _instants(candidate, where, wall=wall)
        if best is not None and instants and instants[0] >= best:
            return best
        for instant in instants:
            if instant > after and (best is None or instant < best):
                best = instant
        if best is not None and len(instants) < 2 and not wall:
            return best
        if best is not None and wall:
            return best


def former_next_cron(expr: str, tz: str, after: datetime) -> datetime | None:
    expr = _checked(expr)
    where = ZoneInfo(tz)
    after = after.astimezone(UTC)
    naive = after.astimezone(where).replace(tzinfo=None, microsecond=0)
    if _wall_clock(expr):
        return _walk(expr, naive - timedelta(minutes=1), where, after, wall=True)
    return _walk(expr, naive - timedelta(hours=2), where, after, wall=False)


# -- where the clocks change ------------------------------------------------------------------------------


@functools.cache
def transitions(tz: str) -> list[datetime]:
    """Return the instants (UTC) from 2010 to 2027 at which ``tz``'s offset changes, to the second."""
    where = ZoneInfo(tz)
    found = []
    t = datetime(2010, 1, 1, tzinfo=UTC)
    end = datetime(2027, 1, 1, tzinfo=UTC)
    step = timedelta(hours=6)
    while t < end:
        if t.astimezone(where).utcoffset() != (t + step).astimezone(where).utcoffset():
            low, high = t, t + step  # offset(low) differs from offset(high)
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if middle.astimezone(where).utcoffset() == low.astimezone(where).utcoffset():
                    low = middle
                else:
                    high = middle
            found.append(high.replace(microsecond=0))
        t += step
    return found


def test_the_scanned_zones_change_their_clocks() -> None:
    assert transitions("UTC") == [] and transitions("Asia/Kolkata") == []
    assert datetime(2024, 10, 27, 1, 0, tzinfo=UTC) in transitions("Europe/Berlin")
    assert len(transitions("Australia/Lord_Howe")) >= 30
    assert datetime(2011, 12, 30, 10, 0, tzinfo=UTC) in transitions("Pacific/Apia")  # the skipped day


# -- random expressions ---------------------------------------------------------------------------------


def field(low: int, high: int) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    return st.one_of(
        st.just("*"),
        st.integers(1, max(1, (high - low) // 2)).map(lambda n: f"*/{n}"),
        st.tuples(value, value).map(lambda ab: f"{min(ab)}-{max(ab)}"),
        st.lists(value, min_size=2, max_size=4, unique=True).map(lambda xs: ",".join(map(str, sorted(xs)))),
        st.tuples(value, value, st.integers(1, 3)).map(lambda abn: f"{min(abn[:2])}-{max(abn[:2])}/{abn[2]}"),
        value.map(str),
    )


@st.composite
def expressions(draw: st.DrawFn) -> str:
    parts = [
        draw(field(0, 59)),
        draw(field(0, 23)),
        draw(st.one_of(st.just("*"), field(1, 28), st.just("L"))),
        draw(st.one_of(st.just("*"), field(1, 12))),
        draw(st.one_of(st.just("*"), field(0, 6), st.just("MON-FRI"), st.just("5#2"))),
    ]
    if draw(st.booleans()):
        parts.insert(0, draw(field(0, 59)))
    return " ".join(parts)


@st.composite
def instants(draw: st.DrawFn) -> tuple[str, datetime]:
    tz = draw(st.sampled_from(ZONES))
    changes = transitions(tz)
    if changes and draw(st.integers(0, 4)) > 0:
        base = draw(st.sampled_from(changes))
        shift = draw(st.integers(-3 * 3600 - 59, 3 * 3600 + 59))
    else:
        base = datetime(2010, 1, 1, tzinfo=UTC)
        shift = draw(st.integers(0, 17 * 366 * 86400))
    micro = draw(st.sampled_from([0, 0, 1, 500_000, 999_999]))
    return tz, base + timedelta(seconds=shift, microseconds=micro)


def fires(expr: str, tz: str, after: datetime) -> datetime | None:
    return next_cron(expr, tz, after)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=expressions(), where=instants())
@example(expr="* * * * * *", where=("Europe/Berlin", datetime(2024, 10, 27, 0, 50, 30, tzinfo=UTC)))
@example(expr="0 0-29 2 * * *", where=("Europe/Berlin", datetime(2024, 10, 27, 0, 50, 30, tzinfo=UTC)))
@example(expr="*/15 * * * *", where=("Europe/Berlin", datetime(2024, 10, 27, 0, 50, 30, tzinfo=UTC)))
@example(expr="* * * * * *", where=("Antarctica/Troll", datetime(2024, 10, 27, 0, 59, 59, tzinfo=UTC)))
@example(expr="10 1 * * *", where=("Australia/Lord_Howe", datetime(2024, 4, 6, 14, 45, tzinfo=UTC)))
@example(expr="5 * * * * *", where=("Pacific/Apia", datetime(2011, 12, 30, 9, 59, 59, tzinfo=UTC)))
def test_next_cron_equals_the_former_walk(expr: str, where: tuple[str, datetime]) -> None:
    tz, after = where
    try:
        _checked(expr)
    except ValueError:
        return  # refused at creation (e.g. "0 0 30 2 *" cannot be built here: days stop at 28)
    expected = former_next_cron(expr, tz, after)
    assert fires(expr, tz, after) == expected, (expr, tz, after.isoformat())
    if expected is not None:  # and the fire after that one
        assert fires(expr, tz, expected) == former_next_cron(expr, tz, expected), (expr, tz, expected.isoformat())


def test_every_second_of_a_fall_back_night_in_two_zones() -> None:
    """Every instant of a repeated hour, each second: a 6-field cron fires at the next second, in real time."""
    for tz, change in [
        ("Europe/Berlin", "2024-10-27T01:00:00+00:00"),
        ("Australia/Lord_Howe", "2024-04-06T15:00:00+00:00"),
    ]:
        start = datetime.fromisoformat(change) - timedelta(hours=1, seconds=5)
        for step in range(2 * 3600 + 10):
            after = start + timedelta(seconds=step)
            assert next_cron("* * * * * *", tz, after) == after + timedelta(seconds=1)
        # A cron on the first 30 minutes of local 02:00 (01:30 in Lord Howe, whose repeat is half an hour)
        hour = "2" if tz == "Europe/Berlin" else "1"
        expr = f"0 0-29 {hour} * * *"
        for step in range(0, 2 * 3600 + 10, 7):
            after = start + timedelta(seconds=step)
            assert next_cron(expr, tz, after) == former_next_cron(expr, tz, after), (tz, after)


# -- counting missed fires without stepping through them --------------------------------------------------


def stepped(expr: str, tz: str, after: datetime, until: datetime) -> list[datetime]:
    """Return every fire in ``(after, until]``, one ``next_cron`` at a time."""
    found: list[datetime] = []
    current = after
    while (fire := next_cron(expr, tz, current)) is not None and fire <= until:
        found.append(fire)
        current = fire
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=expressions(), where=instants(), span=st.integers(0, 3 * 86400), keep=st.integers(1, 12))
@example(expr="30 2 * * *", where=("Europe/Berlin", datetime(2024, 3, 30, 12, tzinfo=UTC)), span=86400, keep=2)
@example(expr="30 2 * * *", where=("Europe/Berlin", datetime(2024, 10, 26, 12, tzinfo=UTC)), span=86400, keep=3)
@example(expr="*/20 2 * * *", where=("Europe/Berlin", datetime(2024, 10, 26, 12, tzinfo=UTC)), span=86400, keep=9)
@example(expr="0 * * * *", where=("Europe/Berlin", datetime(2024, 10, 26, 12, tzinfo=UTC)), span=86400, keep=5)
@example(expr="5 0 * * *", where=("Pacific/Apia", datetime(2011, 12, 29, 0, tzinfo=UTC)), span=3 * 86400, keep=4)
def test_counted_and_last_fires_equal_the_stepped_ones(
    expr: str, where: tuple[str, datetime], span: int, keep: int
) -> None:
    tz, after = where
    try:
        _checked(expr)
    except ValueError:
        return
    if len(expr.split()) == 6:
        span //= 60  # a 6-field cron is stepped through second by second: keep the span short
    until = after + timedelta(seconds=span, microseconds=250_000)
    fires = stepped(expr, tz, after, until)
    assert count_cron(expr, tz, after, until) == len(fires), (expr, tz, after.isoformat(), until.isoformat())
    first = next_cron(expr, tz, after)
    if first is not None and first <= until:
        assert last_cron(expr, tz, first, until, keep) == fires[-keep:], (expr, tz, first.isoformat(), keep)


def test_a_month_of_a_seconds_cron_is_counted_exactly_across_fall_back() -> None:
    """October 2024 in Berlin has 31 days and one repeated hour: every real second is a fire."""
    after = datetime(2024, 10, 1, tzinfo=UTC)
    until = datetime(2024, 11, 1, 0, 0, 30, 500_000, tzinfo=UTC)
    assert count_cron("* * * * * *", "Europe/Berlin", after, until) == 31 * 86400 + 30
    # a fixed-time job fires once on the fall-back night, and at 03:00 on the spring-forward one
    assert count_cron("30 2 * * *", "Europe/Berlin", after, until) == 31
    march = stepped("30 2 * * *", "Europe/Berlin", datetime(2024, 3, 30, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))
    assert march == [datetime(2024, 3, 30, 1, 30, tzinfo=UTC), datetime(2024, 3, 31, 1, 0, tzinfo=UTC)]
    assert last_cron("* * * * * *", "Europe/Berlin", after, until, 3) == [
        until.replace(microsecond=0) - timedelta(seconds=n) for n in (2, 1, 0)
    ]
