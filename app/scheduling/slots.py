"""Availability as time: from weekly rules and date overrides (wall-clock hours in IANA
zones) to availability windows and bookable start times in UTC. Pure: no database, no I/O.

Wall clock to UTC, exactly. A rule's hours on a local date are the set of real instants
whose local time on that date lies in [start, end): a spring-forward gap contributes no
instants (01:30-03:30 on that day in New York is one real hour), a fall-back hour
contributes both of its passes. Start times are the instants whose local time is on the
grid (a multiple of the step since local midnight, so :00/:15/:30/:45 for 15 minutes):
a skipped local time has no instant, an ambiguous one has two, each offered once.

Both follow from one representation: over the queried span a zone's UTC offset is
piecewise constant (`_Offsets`), and within a piece local time is UTC plus a constant.
"""

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from app.infra.errors import ValidationFailed

# Stored as the end of hours that run to midnight ("24:00" in the API): a Time column
# cannot hold 24:00, and the hours check (end > start) still holds.
END_OF_DAY = time.max

UNAVAILABLE = "unavailable"
AVAILABLE = "available"

type Interval = tuple[datetime, datetime]

_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)  # the resolution of datetime: t <= x is t < x + _TICK
# Offsets are sampled this far apart and bisected where they change: no zone changes its
# offset twice within six hours.
_SAMPLE = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class WeeklyHours:
    """A weekly rule: on `weekday` (0 = Monday) from `start` to `end` in `zone`, on local
    dates between the effective dates (inclusive; None: open)."""

    weekday: int
    start: time
    end: time
    zone: str
    effective_from: date | None = None
    effective_until: date | None = None


@dataclass(frozen=True, slots=True)
class DateOverride:
    """One local date in `zone`: `unavailable` (the whole day if no hours, else those
    hours) or `available` (extra hours)."""

    day: date
    kind: str
    zone: str
    start: time | None = None
    end: time | None = None


# Names of the host's zone files that are no IANA zone (the host's own setting, a
# template, a placeholder).
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@cache
def known_zones() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_ZONES


def is_known_zone(key: str) -> bool:
    """An IANA zone name that zoneinfo can load (not a path, not "localtime")."""
    return key in known_zones()


def check_range(start: datetime, end: datetime, max_days: int) -> None:
    """A query range must be aware, forward and at most `max_days` long (ValidationFailed)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValidationFailed("Times need a UTC offset (RFC 3339).")
    if end <= start:
        raise ValidationFailed("The range must end after it starts.")
    if end - start > timedelta(days=max_days):
        raise ValidationFailed(f"The range may span at most {max_days} days.")


class _Offsets:
    """A zone's UTC offset over [lo, hi): sorted pieces (start, end, offset)."""

    def __init__(self, zone: ZoneInfo, lo: datetime, hi: datetime) -> None:
        self.pieces: list[tuple[datetime, datetime, timedelta]] = []
        start, offset = lo, _offset_at(zone, lo)
        t = lo
        while t < hi:
            nxt = min(t + _SAMPLE, hi)
            if _offset_at(zone, nxt) != offset:
                change = _first_change(zone, t, nxt, offset)
                self.pieces.append((start, change, offset))
                start, offset = change, _offset_at(zone, change)
                t = change
            else:
                t = nxt
        self.pieces.append((start, hi, offset))

    def wall_span(self, local_start: datetime, local_end: datetime) -> list[Interval]:
        """The instants whose local time (naive datetimes) is in [local_start, local_end)."""
        spans = []
        naive_start, naive_end = local_start.replace(tzinfo=UTC), local_end.replace(tzinfo=UTC)
        for lo, hi, offset in self.pieces:
            a, b = max(naive_start - offset, lo), min(naive_end - offset, hi)
            if a < b:
                spans.append((a, b))
        return _merge(spans)

    def grid(self, window: Interval, step: timedelta) -> Iterator[datetime]:
        """Instants in `window` whose local time is a multiple of `step` since midnight."""
        for lo, hi, offset in self.pieces:
            a, b = max(window[0], lo), min(window[1], hi)
            if a >= b:
                continue
            local = a + offset  # UTC-tagged local wall time: plain arithmetic, no DST
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
            next_midnight = midnight + _DAY
            t = midnight + _ceil_div(local - midnight, step) * step
            local_end = b + offset
            while t < local_end:
                if t >= next_midnight:  # the grid restarts at each local midnight
                    t = next_midnight
                    next_midnight += _DAY
                    continue
                yield t - offset
                t += step


def zone_offsets(
    zone: ZoneInfo, lo: datetime, hi: datetime
) -> list[tuple[datetime, datetime, timedelta]]:
    """The zone's UTC offset over [lo, hi) (aware), from lo's UTC midnight: sorted pieces
    (start, end, offset). The pieces change on whole seconds, as zones do."""
    midnight = lo.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return _Offsets(zone, midnight, hi.astimezone(UTC)).pieces


def _offset_at(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _first_change(zone: ZoneInfo, lo: datetime, hi: datetime, offset: timedelta) -> datetime:
    """The first whole second in (lo, hi] whose offset is not `offset` (one exists at hi)."""
    lo_s, hi_s = 0, int((hi - lo).total_seconds())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _offset_at(zone, lo + timedelta(seconds=mid)) == offset:
            lo_s = mid
        else:
            hi_s = mid
    return lo + timedelta(seconds=hi_s)


def _ceil_div(a: timedelta, b: timedelta) -> int:
    return -(-a // b)


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint, with touching intervals joined."""
    merged: list[Interval] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            if b > merged[-1][1]:
                merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def _subtract(intervals: list[Interval], holes: list[Interval]) -> list[Interval]:
    """`intervals` minus `holes` (both sorted and disjoint)."""
    result: list[Interval] = []
    for a, b in intervals:
        for h0, h1 in holes:
            if h1 <= a or h0 >= b:
                continue
            if h0 > a:
                result.append((a, h0))
            a = max(a, h1)
            if a >= b:
                break
        if a < b:
            result.append((a, b))
    return result


def _local(day: date, t: time, *, end: bool = False) -> datetime:
    if end and t == END_OF_DAY:
        return datetime.combine(day + _DAY, time())
    return datetime.combine(day, t)


class _Span:
    """The UTC span being computed and each zone's offsets over it."""

    def __init__(self, start: datetime, end: datetime) -> None:
        # A local date lies within a day of its UTC date (offsets are under 24 hours).
        self.first_day = start.astimezone(UTC).date() - _DAY
        self.last_day = end.astimezone(UTC).date() + _DAY
        self._lo = datetime.combine(self.first_day - _DAY, time(), UTC)
        self._hi = datetime.combine(self.last_day + 2 * _DAY, time(), UTC)
        self._offsets: dict[str, _Offsets] = {}

    def offsets(self, zone: str) -> _Offsets:
        if zone not in self._offsets:
            self._offsets[zone] = _Offsets(ZoneInfo(zone), self._lo, self._hi)
        return self._offsets[zone]

    def days(self) -> Iterator[date]:
        day = self.first_day
        while day <= self.last_day:
            yield day
            day += _DAY


def _windows_by_zone(
    rules: Sequence[WeeklyHours], overrides: Sequence[DateOverride], span: _Span
) -> dict[str, list[Interval]]:
    """Per zone: its rules' hours minus every unavailable override, plus its available
    overrides (so a day off plus extra hours on that date replaces the day's hours)."""
    by_zone: dict[str, list[Interval]] = defaultdict(list)
    rules_by_weekday: dict[int, list[WeeklyHours]] = defaultdict(list)
    for rule in rules:
        rules_by_weekday[rule.weekday].append(rule)
    for day in span.days():
        for rule in rules_by_weekday.get(day.weekday(), ()):
            if rule.effective_from is not None and day < rule.effective_from:
                continue
            if rule.effective_until is not None and day > rule.effective_until:
                continue
            by_zone[rule.zone] += span.offsets(rule.zone).wall_span(
                _local(day, rule.start), _local(day, rule.end, end=True)
            )

    holes: list[Interval] = []
    extra: dict[str, list[Interval]] = defaultdict(list)
    for o in overrides:
        if not span.first_day <= o.day <= span.last_day:
            continue
        if o.start is None or o.end is None:
            local = (_local(o.day, time()), _local(o.day + _DAY, time()))
        else:
            local = (_local(o.day, o.start), _local(o.day, o.end, end=True))
        spans = span.offsets(o.zone).wall_span(*local)
        if o.kind == AVAILABLE:
            extra[o.zone] += spans
        else:
            holes += spans
    merged_holes = _merge(holes)
    return {
        zone: _merge(_subtract(_merge(by_zone.get(zone, ())), merged_holes) + extra.get(zone, []))
        for zone in {*by_zone, *extra}
    }


def windows(
    rules: Sequence[WeeklyHours],
    overrides: Sequence[DateOverride],
    start: datetime,
    end: datetime,
) -> list[Interval]:
    """The coach's availability in [start, end) as sorted, disjoint UTC intervals."""
    span = _Span(start, end)
    every = _merge(w for ws in _windows_by_zone(rules, overrides, span).values() for w in ws)
    clipped = ((max(a, start), min(b, end)) for a, b in every)
    return [(a.astimezone(UTC), b.astimezone(UTC)) for a, b in clipped if a < b]


def slot_starts(
    rules: Sequence[WeeklyHours],
    overrides: Sequence[DateOverride],
    start: datetime,
    end: datetime,
    *,
    duration: timedelta,
    step: timedelta,
) -> list[datetime]:
    """Sorted UTC start times t in [start, end) on the grid of the wall clock whose hours
    t falls in, with [t, t + duration) inside one availability window."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)  # the starts come out in UTC
    span = _Span(start, end + duration)
    by_zone = _windows_by_zone(rules, overrides, span)
    every = _merge(w for ws in by_zone.values() for w in ws)
    per_zone: list[list[datetime]] = []
    for zone, zone_windows in by_zone.items():
        offsets = span.offsets(zone)
        found: list[datetime] = []
        i = 0  # the merged window holding this window: both only move forward
        for window in zone_windows:
            if window[1] <= start or window[0] >= end:
                continue
            while every[i][1] <= window[0]:
                i += 1
            # A start t fits when t + duration <= the end of the merged window holding it.
            last = every[i][1] - duration
            bounded = (max(window[0], start), min(window[1], end, last + _TICK))
            if bounded[0] < bounded[1]:
                found += offsets.grid(bounded, step)
        per_zone.append(found)
    if len(per_zone) == 1:
        return per_zone[0]  # one zone's windows are disjoint and sorted: so are its starts
    return sorted({t for found in per_zone for t in found})
