"""When a job fires: ``cron`` (5 or 6 fields, in an IANA zone), ``every`` (an interval), ``at`` (once).

Daylight-saving time, the way Debian cron does it (and ``cronsim``, the independent implementation
the tests compare against):

- a 5-field expression whose minute and hour are both fixed (``30 2 * * *``, ``0 9-17 * * 1-5``)
  names wall-clock times. One that falls in a skipped hour fires once, at the first valid instant
  after the gap (02:30 on a spring-forward night fires at 03:00); one that falls in a repeated
  hour fires once, on its first pass;
- an expression whose minute or hour is a wildcard (``*/15 * * * *``, ``0 * * * *``), and every
  6-field expression, follows real time: it fires at each instant whose local wall clock matches,
  so an hourly job runs every hour of a fall-back night (twice at 01:00 local) and has no 02:00
  on a spring-forward night.

croniter is imported inside the functions that use it: loading the plugin stays cheap.
"""

from __future__ import annotations

import functools
import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from croniter import croniter  # type: ignore[import-untyped]

#: One year of minutes: a cron expression with no match in that span is refused at creation.
_HORIZON = timedelta(days=366 * 5)
#: How far before ``after``'s wall clock a real-time expression's matches are looked for (the
#: second pass of a repeated hour).
_LOOKBACK = timedelta(hours=2)
_FIELDS = re.compile(r"^[A-Za-z0-9*/,\-#?L]+$")


class ScheduleError(ValueError):
    """A schedule that cannot fire: a bad expression, zone or interval, or a time already past."""


def zone(name: str) -> ZoneInfo:
    """Return the IANA zone ``name``; raise ``ScheduleError`` naming it when it does not exist."""
    try:
        return _zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin") from None


@functools.lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    if not name or "\x00" in name or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(name)
    return ZoneInfo(name)


def _wall_clock(expr: str) -> bool:
    """Return whether ``expr`` names wall-clock times (5 fields, minute and hour fixed)."""
    parts = expr.split()
    return len(parts) == 5 and not parts[0].startswith("*") and not parts[1].startswith("*")


@functools.lru_cache(maxsize=4096)
def _checked(expr: str) -> str:
    from croniter import croniter  # type: ignore[import-untyped]

    parts = expr.split()
    if len(parts) not in (5, 6):
        raise ScheduleError(
            f"cron expression {expr!r} has {len(parts)} fields; give 5 (minute hour day month weekday) or 6 (second first)"
        )
    if not all(_FIELDS.match(p) for p in parts):
        raise ScheduleError(f"cron expression {expr!r} has characters cron does not use")
    parts = [_normalize_field(p, expr) for p in parts]
    try:
        croniter(" ".join(parts), datetime(2000, 1, 1), second_at_beginning=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise ScheduleError(f"invalid cron expression {expr!r}: {exc}") from None
    return " ".join(parts)


def _normalize_field(field: str, expr: str) -> str:
    """Return ``field`` with one-value ranges (``4-4``, ``4-4/2``) written as the value; refuse reversed ranges.

    croniter reads ``a-b`` with ``a >= b`` as a range that wraps around (``4-4``: every value),
    where cron means the values from ``a`` to ``b``.
    """
    items = []
    for item in field.split(","):
        body, _, step = item.partition("/")
        low, dash, high = body.partition("-")
        if dash and low.isdigit() and high.isdigit():
            if int(low) == int(high):
                items.append(low)
                continue
            if int(low) > int(high):
                raise ScheduleError(f"cron expression {expr!r}: range {body} is reversed; write it low-high")
        items.append(item if not step else f"{body}/{step}")
    return ",".join(items)


def check_cron(expr: str, tz: str) -> str:
    """Return ``expr`` normalized; raise ``ScheduleError`` if it is invalid or never fires."""
    normalized = _checked(expr.strip())
    start = datetime.now(UTC)
    if next_cron(normalized, tz, start) is None:
        raise ScheduleError(f"cron expression {expr!r} never fires")
    return normalized


def _iterator(expr: str, start: datetime) -> croniter:
    from croniter import croniter  # type: ignore[import-untyped]

    parts = expr.split()
    dom, dow = parts[-3], parts[-1]
    # Day of month and day of week: both must match when either starts with "*" (cron's rule),
    # either may match otherwise.
    day_or = not (dom.startswith("*") or dow.startswith("*"))
    return croniter(expr, start, second_at_beginning=True, day_or=day_or, max_years_between_matches=6)


def next_cron(expr: str, tz: str, after: datetime) -> datetime | None:
    """Return the first instant strictly after ``after`` (aware) when ``expr`` fires in zone ``tz`` (UTC)."""
    expr = _checked(expr)
    where = zone(tz)
    after = after.astimezone(UTC)
    local = after.astimezone(where)
    naive = local.replace(tzinfo=None, microsecond=0)
    if _wall_clock(expr):
        # Walk wall-clock times; a repeated one fires on its first pass, a skipped one at the
        # first valid instant after the gap. Start a minute before ``after``'s wall clock: in
        # the second pass of a repeated hour, a time of the first pass must not come back.
        return _walk(expr, naive - timedelta(minutes=1), where, after, wall=True)
    # Real time: the fires are the instants whose wall clock matches, looked for among wall-clock
    # times up to two hours before ``after``'s. Each of those names instants at or before
    # ``after``, except in the first pass of a repeated hour: there the second pass of the times
    # from the start of the repeat up to ``after``'s wall clock is still to come.
    lookback = naive - _LOOKBACK
    limit = lookback + _HORIZON
    found = _walk(expr, naive, where, after, wall=False, limit=limit)
    if local.fold == 0 and _repeated(naive, where):
        again = _second_pass(expr, naive, lookback, where)
        if again is not None and again > after and (found is None or again < found):
            found = again
    return found


def _walk(
    expr: str, start: datetime, where: ZoneInfo, after: datetime, *, wall: bool, limit: datetime | None = None
) -> datetime | None:
    it = _iterator(expr, start)
    limit = start + _HORIZON if limit is None else limit
    best: datetime | None = None
    while True:
        try:
            candidate: datetime = it.get_next(datetime)
        except Exception:  # croniter: no match within max_years_between_matches
            return best
        if candidate > limit:
            return best
        instants = _instants(candidate, where, wall=wall)
        if best is not None and instants and instants[0] >= best:
            # Wall-clock times only move forward from here: the second pass of a repeated
            # hour (found before) is the answer only if no earlier instant follows it.
            return best
        for instant in instants:
            if instant > after and (best is None or instant < best):
                best = instant
        if best is not None and not wall and instants and instants[0] <= after:
            # ``after`` is in the second pass of a repeated hour (the walk starts at its wall
            # clock): the times still ahead pass again later, or once after the repeat.
            return best
        if best is not None and len(instants) < 2 and not wall:
            return best
        if best is not None and wall:
            return best


def _repeated(naive: datetime, where: ZoneInfo) -> bool:
    """Return whether wall-clock time ``naive`` happens twice in ``where`` (a fall-back night)."""
    first = naive.replace(tzinfo=where, fold=0)
    second = naive.replace(tzinfo=where, fold=1)
    return first.utcoffset() != second.utcoffset() and all(
        aware.astimezone(UTC).astimezone(where).replace(tzinfo=None) == naive for aware in (first, second)
    )


def _second_pass(expr: str, naive: datetime, lookback: datetime, where: ZoneInfo) -> datetime | None:
    """Return the second pass (UTC) of the first match in the repeated stretch of wall clock ending at ``naive``.

    ``naive`` is repeated; the repeat began at most its length (the clock's step back) before it,
    and only times after ``lookback`` count. The first repeated second after that is found by
    bisection: times before the repeat happen once, times from its start to ``naive`` twice.
    """
    first = naive.replace(tzinfo=where, fold=0).utcoffset()
    second = naive.replace(tzinfo=where, fold=1).utcoffset()
    assert first is not None and second is not None
    low = max(lookback, naive - (first - second))  # not repeated (or not counted)
    below, above = 0, int((naive - low).total_seconds())  # low + above seconds is repeated
    while above - below > 1:
        middle = (below + above) // 2
        if _repeated(low + timedelta(seconds=middle), where):
            above = middle
        else:
            below = middle
    start = low + timedelta(seconds=above)
    try:
        candidate: datetime = _iterator(expr, start - timedelta(seconds=1)).get_next(datetime)
    except Exception:  # croniter: no match within max_years_between_matches
        return None
    if candidate > naive:
        return None  # the first match after ``naive``: the walk from ``naive`` has it
    return candidate.replace(tzinfo=where, fold=1).astimezone(UTC)


def _instants(naive: datetime, where: ZoneInfo, *, wall: bool) -> list[datetime]:
    """Return the real instants (UTC) a wall-clock time names in ``where`` (0, 1 or 2 of them).

    In UTC, because aware datetimes of one zone compare by wall clock, ignoring ``fold``.
    """
    first = naive.replace(tzinfo=where, fold=0)
    second = naive.replace(tzinfo=where, fold=1)
    real_first = first.astimezone(UTC).astimezone(where).replace(tzinfo=None) == naive
    real_second = second.astimezone(UTC).astimezone(where).replace(tzinfo=None) == naive
    if not real_first and not real_second:  # skipped by the clock
        return [_after_gap(naive, where).astimezone(UTC)] if wall else []
    if wall or first.utcoffset() == second.utcoffset():
        return [first.astimezone(UTC)]
    return [first.astimezone(UTC), second.astimezone(UTC)]


def _after_gap(naive: datetime, where: ZoneInfo) -> datetime:
    """Return the first valid whole minute after ``naive``, a wall-clock time the clock skips."""
    probe = naive
    while True:
        probe += timedelta(minutes=1)
        aware = probe.replace(tzinfo=where, fold=0)
        if aware.astimezone(UTC).astimezone(where).replace(tzinfo=None) == probe:
            return aware


def count_cron(expr: str, tz: str, after: datetime, until: datetime) -> int:
    """Return how many times ``expr`` fires in zone ``tz`` strictly after ``after`` and up to ``until``.

    Counted without stepping through the fires: between two changes of the zone's offset, the
    instants whose wall clock matches are counted day by day (``_plan`` adds the DST rule of
    wall-clock expressions).
    """
    expr = _checked(expr)
    where = zone(tz)
    pieces, extras = _plan(expr, where, _whole(after) + _SECOND, _whole(until) + _SECOND)
    return sum(_count_fixed(expr, where, low, high) for low, high in pieces) + len(extras)


def last_cron(expr: str, tz: str, first: datetime, until: datetime, keep: int) -> list[datetime]:
    """Return the last ``keep`` fires from ``first`` (a fire) up to ``until``, oldest first (UTC).

    Found from ``until`` backwards: a window grows until it holds ``keep`` fires, is narrowed by
    bisection to the latest start that still does, and only those fires are listed.
    """
    first, until = first.astimezone(UTC), until.astimezone(UTC)
    if until < first or keep < 1:
        return []
    span = timedelta(minutes=1)
    while True:
        low = max(first, until - span)
        count = count_cron(expr, tz, low, until)
        if count >= keep or low == first:
            break
        span *= 4
    if count > 2 * keep:
        below, above = 0, int((until - low).total_seconds())  # ``low + below`` keeps ``keep`` fires
        while above - below > 1:
            middle = (below + above) // 2
            if count_cron(expr, tz, low + timedelta(seconds=middle), until) >= keep:
                below = middle
            else:
                above = middle
        low += timedelta(seconds=below)
    expr, where = _checked(expr), zone(tz)
    pieces, extras = _plan(expr, where, _whole(low) + _SECOND, _whole(until) + _SECOND)
    fires = sorted([*extras, *(fire for start, end in pieces for fire in _list_fixed(expr, where, start, end))])
    return (([first] if low == first else []) + fires)[-keep:]


_SECOND = timedelta(seconds=1)


def _whole(instant: datetime) -> datetime:
    """Return ``instant`` in UTC, cut to the second."""
    return instant.astimezone(UTC).replace(microsecond=0)


def _plan(
    expr: str, where: ZoneInfo, start: datetime, end: datetime
) -> tuple[list[tuple[datetime, datetime]], list[datetime]]:
    """Return how ``expr``'s fires in ``[start, end)`` are found: stretches of one offset, and single fires.

    In each stretch, the fires are the instants whose wall clock matches. A wall-clock expression
    leaves out the second pass of a repeated hour, and fires once at the end of a skipped one
    that holds a match (unless the end matches itself).
    """
    if end <= start:
        return [], []
    changes = _changes(where, start - timedelta(days=1), end)
    edges = [start, *(change for change in changes if start < change < end), end]
    pieces = list(itertools.pairwise(edges))
    extras: list[datetime] = []
    if not _wall_clock(expr):
        return pieces, extras
    for change in changes:
        before = (change - _SECOND).astimezone(where).utcoffset()
        after = change.astimezone(where).utcoffset()
        assert before is not None and after is not None
        if after < before:  # the wall clock goes back: [change, change + step) is the second pass
            again = change + (before - after)
            pieces = [
                part
                for low, high in pieces
                for part in ((low, min(high, change)), (max(low, again), high))
                if part[0] < part[1]
            ]
        elif start <= change < end:
            wall = (change + after).replace(tzinfo=None)
            if _count_wall(expr, (change + before).replace(tzinfo=None), wall) and not _count_wall(
                expr, wall, wall + _SECOND
            ):
                extras.append(change)
    return pieces, extras


def _changes(where: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Return the instants in ``(start, end)`` at which ``where``'s offset changes."""
    return [
        change
        for year in range(start.year - 1, end.year + 1)
        for change in _year_changes(where.key, year)
        if start < change < end
    ]


@functools.lru_cache(maxsize=1024)
def _year_changes(key: str, year: int) -> tuple[datetime, ...]:
    """Return the instants of UTC year ``year`` at which zone ``key``'s offset changes (probed every 6 hours, then bisected)."""
    where = zone(key)
    found: list[datetime] = []
    step = timedelta(hours=6)
    low = datetime(year, 1, 1, tzinfo=UTC) - _SECOND
    end = datetime(year + 1, 1, 1, tzinfo=UTC) - _SECOND
    while low < end:
        high = min(low + step, end)
        if low.astimezone(where).utcoffset() != high.astimezone(where).utcoffset():
            before, after = low, high
            while after - before > _SECOND:
                middle = _whole(before + (after - before) / 2)
                if middle.astimezone(where).utcoffset() == before.astimezone(where).utcoffset():
                    before = middle
                else:
                    after = middle
            found.append(after)
        low = high
    return tuple(found)


def _list_fixed(expr: str, where: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Return the instants in ``[start, end)``, a stretch with one UTC offset, whose wall clock matches (UTC)."""
    offset = start.astimezone(where).utcoffset()
    assert offset is not None
    it = _iterator(expr, (start + offset).replace(tzinfo=None) - _SECOND)
    found: list[datetime] = []
    while True:
        try:
            wall: datetime = it.get_next(datetime)
        except Exception:  # croniter: no match within max_years_between_matches
            return found
        instant = (wall - offset).replace(tzinfo=UTC)
        if instant >= end:
            return found
        found.append(instant)


def _count_fixed(expr: str, where: ZoneInfo, start: datetime, end: datetime) -> int:
    """Return how many instants in ``[start, end)``, a stretch with one UTC offset, have a matching wall clock."""
    if end <= start:
        return 0
    offset = start.astimezone(where).utcoffset()
    assert offset is not None
    return _count_wall(expr, (start + offset).replace(tzinfo=None), (end + offset).replace(tzinfo=None))


def _count_wall(expr: str, low: datetime, high: datetime) -> int:
    """Return how many wall-clock seconds in ``[low, high)`` (naive, whole seconds) match ``expr``."""
    import bisect

    from croniter import croniter

    seconds, minutes, hours = _times(expr)
    per_day = len(seconds) * len(minutes) * len(hours)

    def before(day: datetime, moment: datetime) -> int:
        """Return the matching times of ``day`` before ``moment``."""
        if moment <= day:
            return 0
        if moment >= day + timedelta(days=1):
            return per_day
        h, m, s = moment.hour, moment.minute, moment.second
        count = bisect.bisect_left(hours, h) * len(minutes) * len(seconds)
        if h in hours:
            count += bisect.bisect_left(minutes, m) * len(seconds)
            if m in minutes:
                count += bisect.bisect_left(seconds, s)
        return count

    parts = expr.split()
    dom, month, dow = parts[-3:]
    day_or = not (dom.startswith("*") or dow.startswith("*"))
    days = croniter(
        f"0 0 {dom} {month} {dow}",
        datetime.combine(low.date(), datetime.min.time()) - timedelta(minutes=1),
        day_or=day_or,
        max_years_between_matches=6,
    )
    total = 0
    while True:
        try:
            day: datetime = days.get_next(datetime)
        except Exception:  # croniter: no matching day within max_years_between_matches
            return total
        if day >= high:
            return total
        total += before(day, high) - before(day, low)


@functools.lru_cache(maxsize=1024)
def _times(expr: str) -> tuple[list[int], list[int], list[int]]:
    """Return the seconds, minutes and hours ``expr`` matches, sorted."""
    from croniter import croniter

    expanded = croniter(expr, datetime(2000, 1, 1), second_at_beginning=True).expanded
    minutes, hours = expanded[0], expanded[1]
    seconds = expanded[5] if len(expanded) > 5 else [0]

    def values(field: list[Any], top: int) -> list[int]:
        return list(range(top)) if "*" in field else sorted({int(v) for v in field})

    return values(seconds, 60), values(minutes, 60), values(hours, 24)


def parse_every(text: str) -> float:
    """Return the seconds of an interval such as ``90``, ``30s``, ``15m``, ``2h``, ``1d``, ``1h30m``."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        parts = re.fullmatch(r"((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?", value)
        if not value or parts is None:
            raise ScheduleError(f"interval {text!r}: give seconds or a duration such as 30s, 15m, 2h, 1d, 1h30m")
        d, h, m, s = (int(parts.group(i) or 0) for i in (2, 4, 6, 8))
        seconds = float(d * 86400 + h * 3600 + m * 60 + s)
    if seconds < 1 or seconds > 366 * 86400:
        raise ScheduleError(f"interval {text!r} must be between 1 second and 366 days")
    return seconds


def parse_at(text: str, tz: str, now: datetime) -> datetime:
    """Return a one-shot ISO 8601 time as UTC (a time without offset is in ``tz``); refuse a past time."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ScheduleError(
            f"at {text!r} is not an ISO 8601 time such as 2030-01-31T09:00 or 2030-01-31T09:00+01:00"
        ) from None
    if when.tzinfo is None:
        where = zone(tz)
        aware = when.replace(tzinfo=where, fold=0)
        if aware.astimezone(UTC).astimezone(where).replace(tzinfo=None) != when:
            aware = _after_gap(when, where)
        when = aware
    when = when.astimezone(UTC)
    if when <= now:
        raise ScheduleError(
            f"at {text!r} is already past ({when.isoformat(timespec='seconds')} UTC, now"
            f" {now.astimezone(UTC).isoformat(timespec='seconds')}): give a future time"
        )
    return when


def next_fire(kind: str, spec: Any, tz: str, after: datetime, anchor: datetime | None = None) -> datetime | None:
    """Return the next fire of a schedule strictly after ``after`` (UTC), or ``None`` when it has no more.

    ``every`` fires at ``anchor + k * interval``; ``at`` fires once at ``spec`` (an aware time).
    """
    if kind == "cron":
        return next_cron(str(spec), tz, after)
    if kind == "every":
        seconds = float(spec)
        base = anchor or after
        steps = max(0, int((after - base).total_seconds() // seconds) + 1)
        candidate = base + timedelta(seconds=steps * seconds)
        while candidate <= after:
            candidate += timedelta(seconds=seconds)
        return candidate
    if kind == "at":
        when = spec if isinstance(spec, datetime) else datetime.fromisoformat(str(spec))
        return when if when > after else None
    raise ScheduleError(f"unknown schedule kind {kind!r}")
