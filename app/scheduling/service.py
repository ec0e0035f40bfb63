"""What a coach offers: session types and availability, and the start times they offer.

Who may change what is decided in app/scheduling/permissions.py. Public functions that take
`db` are one unit of work in the caller's tenant; those that take `session` are steps of
the caller's transaction (app/bookings calls them) and check no permissions
(docs/architecture.md, "The service contract").
"""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Date, SmallInteger, String, cast, delete, literal, null, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.caller import Caller
from app.infra.db import Database
from app.infra.errors import NotFound, ValidationFailed
from app.infra.pagination import Page, after_cursor, page_of
from app.infra.settings import Settings
from app.scheduling import permissions, slots
from app.scheduling.models import AvailabilityOverride, AvailabilityRule, SessionType

# Session types

SESSION_TYPE_FIELDS = (
    "title",
    "duration_minutes",
    "buffer_before_minutes",
    "buffer_after_minutes",
    "location",
    "capacity",
    "min_notice_minutes",
    "booking_window_days",
)


async def create_session_type(
    db: Database, caller: Caller, *, coach_id: uuid.UUID | None, fields: Mapping[str, Any]
) -> SessionType:
    """A new booking option of `coach_id` (default: the caller): its own or, for an ADMIN
    or SCHEDULER, any coach's. `fields`: SESSION_TYPE_FIELDS (omitted: the defaults)."""
    coach_id = coach_id or caller.user_id
    permissions.check_can_manage_coach(caller, coach_id)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        await permissions.check_is_coach(session, coach_id)
        session_type = SessionType(
            tenant_id=caller.tenant_id,
            coach_id=coach_id,
            **{f: fields[f] for f in SESSION_TYPE_FIELDS if f in fields},
        )
        session.add(session_type)
        await session.flush()
        await session.refresh(session_type)
    return session_type


async def list_session_types(
    db: Database,
    caller: Caller,
    *,
    coach_id: uuid.UUID | None,
    include_inactive: bool,
    limit: int,
    cursor: str | None,
) -> Page[SessionType]:
    """The tenant's session types, oldest first, for any member; one coach's if given."""
    query = select(SessionType)
    if coach_id is not None:
        query = query.where(SessionType.coach_id == coach_id)
    if not include_inactive:
        query = query.where(SessionType.active)
    query = after_cursor(query, SessionType.created_at, SessionType.id, cursor, oldest_first=True)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        rows = list((await session.scalars(query.limit(limit + 1))).all())
    return page_of(rows, limit, lambda t: (t.created_at, t.id))


async def get_session_type(db: Database, caller: Caller, session_type_id: uuid.UUID) -> SessionType:
    """A session type of the caller's tenant, active or not (any member reads it)."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        return await _session_type(session, session_type_id)


async def update_session_type(
    db: Database, caller: Caller, session_type_id: uuid.UUID, *, changes: Mapping[str, Any]
) -> SessionType:
    """Change a session type of the caller's own (COACH) or of any coach (ADMIN, SCHEDULER);
    `changes`: SESSION_TYPE_FIELDS and `active`. Booked sessions keep their times."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        session_type = await _session_type(session, session_type_id, for_update=True)
        permissions.check_can_manage_coach(caller, session_type.coach_id)
        for field in (*SESSION_TYPE_FIELDS, "active"):
            if field in changes:
                setattr(session_type, field, changes[field])
        await session.flush()
        await session.refresh(session_type)
    return session_type


async def _session_type(
    session: AsyncSession, session_type_id: uuid.UUID, *, for_update: bool = False
) -> SessionType:
    query = select(SessionType).where(SessionType.id == session_type_id)
    found = await session.scalar(query.with_for_update() if for_update else query)
    if found is None:
        raise NotFound("Session type not found.")
    return found


async def session_type_for_booking(
    session: AsyncSession, session_type_id: uuid.UUID
) -> SessionType:
    """The session type, if it is active and of the transaction's tenant; else NotFound.
    A step: runs in the caller's transaction."""
    found = await session.scalar(
        select(SessionType).where(SessionType.id == session_type_id, SessionType.active)
    )
    if found is None:
        raise NotFound("Session type not found.")
    return found


# Availability


@dataclass(frozen=True)
class NewWeeklyHours:
    weekday: int
    start: time
    end: time


@dataclass(frozen=True)
class NewDateOverride:
    day: date
    kind: str
    start: time | None
    end: time | None


@dataclass(frozen=True)
class Availability:
    coach_id: uuid.UUID
    rules: list[AvailabilityRule]
    overrides: list[AvailabilityOverride]


async def add_availability(
    db: Database,
    caller: Caller,
    *,
    coach_id: uuid.UUID | None,
    time_zone: str,
    effective_from: date | None,
    effective_until: date | None,
    rules: Sequence[NewWeeklyHours],
    overrides: Sequence[NewDateOverride],
) -> Availability:
    """Add weekly hours and date overrides, in `time_zone`, to the availability of
    `coach_id` (default: the caller): its own (COACH) or any coach's (ADMIN, SCHEDULER).
    Returns what was added."""
    coach_id = coach_id or caller.user_id
    permissions.check_can_manage_coach(caller, coach_id)
    _check_zone(time_zone)
    _check_effective(effective_from, effective_until)
    for r in rules:
        _check_hours(r.start, r.end)
    for o in overrides:
        _check_hours(o.start, o.end)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        await permissions.check_is_coach(session, coach_id)
        added_rules = [
            AvailabilityRule(
                tenant_id=caller.tenant_id,
                coach_id=coach_id,
                weekday=r.weekday,
                start_time=r.start,
                end_time=r.end,
                time_zone=time_zone,
                effective_from=effective_from,
                effective_until=effective_until,
            )
            for r in rules
        ]
        added_overrides = [
            AvailabilityOverride(
                tenant_id=caller.tenant_id,
                coach_id=coach_id,
                day=o.day,
                kind=o.kind,
                start_time=o.start,
                end_time=o.end,
                time_zone=time_zone,
            )
            for o in overrides
        ]
        session.add_all([*added_rules, *added_overrides])
        await session.flush()
    return Availability(coach_id, added_rules, added_overrides)


async def update_rule(
    db: Database, caller: Caller, rule_id: uuid.UUID, *, changes: Mapping[str, Any]
) -> AvailabilityRule:
    """Change a weekly rule; `changes`: weekday, start, end, time_zone, effective_from,
    effective_until. The result must still be valid (ValidationFailed)."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        rule = await _row(session, AvailabilityRule, rule_id)
        permissions.check_can_manage_coach(caller, rule.coach_id)
        weekday = changes.get("weekday", rule.weekday)
        start = changes.get("start", rule.start_time)
        end = changes.get("end", rule.end_time)
        time_zone = changes.get("time_zone", rule.time_zone)
        first = changes.get("effective_from", rule.effective_from)
        last = changes.get("effective_until", rule.effective_until)
        _check_zone(time_zone)
        _check_hours(start, end)
        _check_effective(first, last)
        rule.weekday, rule.start_time, rule.end_time, rule.time_zone = (
            weekday,
            start,
            end,
            time_zone,
        )
        rule.effective_from, rule.effective_until = first, last
    return rule


async def update_override(
    db: Database, caller: Caller, override_id: uuid.UUID, *, changes: Mapping[str, Any]
) -> AvailabilityOverride:
    """Change a date override; `changes`: date, kind, start, end, time_zone. The result
    must still be valid (ValidationFailed)."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        override = await _row(session, AvailabilityOverride, override_id)
        permissions.check_can_manage_coach(caller, override.coach_id)
        day = changes.get("date", override.day)
        kind = changes.get("kind", override.kind)
        start = changes.get("start", override.start_time)
        end = changes.get("end", override.end_time)
        time_zone = changes.get("time_zone", override.time_zone)
        _check_zone(time_zone)
        if (start is None) != (end is None):
            raise ValidationFailed("An override has both start and end, or neither.")
        if kind == slots.AVAILABLE and start is None:
            raise ValidationFailed("Available hours need start and end.")
        _check_hours(start, end)
        override.day, override.kind, override.time_zone = day, kind, time_zone
        override.start_time, override.end_time = start, end
    return override


async def delete_rule(db: Database, caller: Caller, rule_id: uuid.UUID) -> None:
    """Remove a weekly rule (booked sessions stay)."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        rule = await _row(session, AvailabilityRule, rule_id)
        permissions.check_can_manage_coach(caller, rule.coach_id)
        await session.execute(delete(AvailabilityRule).where(AvailabilityRule.id == rule_id))


async def delete_override(db: Database, caller: Caller, override_id: uuid.UUID) -> None:
    """Remove a date override."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        override = await _row(session, AvailabilityOverride, override_id)
        permissions.check_can_manage_coach(caller, override.coach_id)
        await session.execute(
            delete(AvailabilityOverride).where(AvailabilityOverride.id == override_id)
        )


async def _row[M: (AvailabilityRule, AvailabilityOverride)](
    session: AsyncSession, model: type[M], row_id: uuid.UUID
) -> M:
    found = await session.scalar(select(model).where(model.id == row_id).with_for_update())
    if found is None:
        raise NotFound("Availability not found.")
    return found


def _check_zone(time_zone: str) -> None:
    if not slots.is_known_zone(time_zone):
        raise ValidationFailed(f"Unknown time zone {time_zone!r} (use an IANA name).")


def _check_hours(start: time | None, end: time | None) -> None:
    if start is not None and end is not None and end <= start:
        raise ValidationFailed("Hours must end after they start.")


def _check_effective(first: date | None, last: date | None) -> None:
    if first is not None and last is not None and last < first:
        raise ValidationFailed("effective_until must not be before effective_from.")


async def coach_availability(
    session: AsyncSession,
    coach_id: uuid.UUID,
    *,
    overrides_from: date | None = None,
    overrides_until: date | None = None,
) -> tuple[list[AvailabilityRule], list[AvailabilityOverride]]:
    """The coach's weekly rules and date overrides (those dated within the given bounds,
    if any), in one query. The rows are detached copies for reading. A step: runs in the
    caller's transaction (its tenant), checks no permissions (any member reads them)."""
    rule_rows = select(
        literal("rule", String).label("source"),
        AvailabilityRule.id,
        AvailabilityRule.tenant_id,
        AvailabilityRule.coach_id,
        AvailabilityRule.weekday,
        cast(null(), Date).label("day"),
        cast(null(), String).label("kind"),
        AvailabilityRule.start_time,
        AvailabilityRule.end_time,
        AvailabilityRule.time_zone,
        AvailabilityRule.effective_from,
        AvailabilityRule.effective_until,
        AvailabilityRule.created_at,
    ).where(AvailabilityRule.coach_id == coach_id)
    override_rows = select(
        literal("override", String),
        AvailabilityOverride.id,
        AvailabilityOverride.tenant_id,
        AvailabilityOverride.coach_id,
        cast(null(), SmallInteger),
        AvailabilityOverride.day,
        AvailabilityOverride.kind,
        AvailabilityOverride.start_time,
        AvailabilityOverride.end_time,
        AvailabilityOverride.time_zone,
        cast(null(), Date),
        cast(null(), Date),
        AvailabilityOverride.created_at,
    ).where(AvailabilityOverride.coach_id == coach_id)
    if overrides_from is not None:
        override_rows = override_rows.where(AvailabilityOverride.day >= overrides_from)
    if overrides_until is not None:
        override_rows = override_rows.where(AvailabilityOverride.day <= overrides_until)
    query = rule_rows.union_all(override_rows)
    rules: list[AvailabilityRule] = []
    overrides: list[AvailabilityOverride] = []
    for row in (await session.execute(query)).all():
        common = {
            "id": row.id,
            "tenant_id": row.tenant_id,
            "coach_id": row.coach_id,
            "start_time": row.start_time,
            "end_time": row.end_time,
            "time_zone": row.time_zone,
            "created_at": row.created_at,
        }
        if row.source == "rule":
            rules.append(
                AvailabilityRule(
                    **common,
                    weekday=row.weekday,
                    effective_from=row.effective_from,
                    effective_until=row.effective_until,
                )
            )
        else:
            overrides.append(AvailabilityOverride(**common, day=row.day, kind=row.kind))
    rules.sort(key=lambda r: (r.weekday, r.start_time, r.created_at))
    overrides.sort(key=lambda o: (o.day, o.start_time or time(), o.created_at))
    return rules, overrides


def weekly_hours(rules: Sequence[AvailabilityRule]) -> list[slots.WeeklyHours]:
    return [
        slots.WeeklyHours(
            r.weekday, r.start_time, r.end_time, r.time_zone, r.effective_from, r.effective_until
        )
        for r in rules
    ]


def date_overrides(overrides: Sequence[AvailabilityOverride]) -> list[slots.DateOverride]:
    return [
        slots.DateOverride(o.day, o.kind, o.time_zone, o.start_time, o.end_time) for o in overrides
    ]


async def offered_starts(
    session: AsyncSession,
    session_type: SessionType,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    settings: Settings,
    availability: tuple[Sequence[AvailabilityRule], Sequence[AvailabilityOverride]] | None = None,
) -> list[datetime]:
    """UTC start times in [start, end) that the coach's availability offers for this type:
    the session fully inside a window, on the grid, at least min_notice after `now`, at
    most booking_window_days after `now`. Taken time NOT considered. `availability`: the
    coach's rules and overrides if already loaded (coach_availability), else one query.
    ValidationFailed for a range that is reversed, naive or wider than
    scheduling_max_range_days. A step (caller's transaction, caller's tenant)."""
    slots.check_range(start, end, settings.scheduling_max_range_days)
    offer = Offer.of(session_type)
    earliest, latest = offer.bounds(start, end, now)
    if earliest >= latest:
        return []
    if availability is None:
        availability = await coach_availability(
            session,
            session_type.coach_id,
            overrides_from=earliest.astimezone(UTC).date() - timedelta(days=2),
            overrides_until=latest.astimezone(UTC).date() + timedelta(days=3),
        )
    rules, overrides = availability
    return offer.starts(
        weekly_hours(rules), date_overrides(overrides), start, end, now=now, settings=settings
    )


@dataclass(frozen=True, slots=True)
class Offer:
    """What of a session type decides the starts it offers: for hot paths that read the
    type and the coach's hours as raw rows (availability_sql) rather than ORM rows."""

    duration_minutes: int
    min_notice_minutes: int
    booking_window_days: int

    @classmethod
    def of(cls, session_type: SessionType) -> "Offer":
        return cls(
            session_type.duration_minutes,
            session_type.min_notice_minutes,
            session_type.booking_window_days,
        )

    def bounds(self, start: datetime, end: datetime, now: datetime) -> tuple[datetime, datetime]:
        """[start, end) narrowed by the minimum notice and the booking window."""
        earliest = max(start, now + timedelta(minutes=self.min_notice_minutes))
        latest = min(end, now + timedelta(days=self.booking_window_days, microseconds=1))
        return earliest, latest

    def starts(
        self,
        hours: Sequence[slots.WeeklyHours],
        overrides: Sequence[slots.DateOverride],
        start: datetime,
        end: datetime,
        *,
        now: datetime,
        settings: Settings,
    ) -> list[datetime]:
        """offered_starts over hours and overrides already read (pure; the range is
        checked by the caller)."""
        earliest, latest = self.bounds(start, end, now)
        if earliest >= latest:
            return []
        return slots.slot_starts(
            hours,
            overrides,
            earliest,
            latest,
            duration=timedelta(minutes=self.duration_minutes),
            step=timedelta(minutes=settings.scheduling_slot_step_minutes),
        )

    def offers(
        self,
        hours: Sequence[slots.WeeklyHours],
        overrides: Sequence[slots.DateOverride],
        start: datetime,
        *,
        now: datetime,
        settings: Settings,
    ) -> bool:
        """is_offered over hours and overrides already read (pure)."""
        one = timedelta(microseconds=1)
        found = self.starts(hours, overrides, start, start + one, now=now, settings=settings)
        return start in found


def availability_sql(coach: str, first_day: str, last_day: str) -> str:
    """Two select-list columns, `rules` and `overrides`: the coach's weekly rules and the
    overrides dated in [first_day, last_day], as arrays of records, for hot paths that
    read them in one raw (asyncpg) statement with other rows (availability_of reads them);
    RLS adds the tenant. The arguments are SQL expressions (a column, a parameter), never values."""
    return (
        "ARRAY(SELECT ROW(r.weekday, r.start_time, r.end_time, r.time_zone, r.effective_from,"  # noqa: S608
        " r.effective_until, r.id::text, r.created_at) FROM availability_rules r"
        f" WHERE r.coach_id = {coach}"
        ") AS rules, "
        "ARRAY(SELECT ROW(o.day, o.kind, o.time_zone, o.start_time, o.end_time, o.id::text,"
        " o.created_at) FROM availability_overrides o"
        f" WHERE o.coach_id = {coach}"
        f" AND o.day BETWEEN {first_day} AND {last_day}) AS overrides"
    )


class RuleRecord(NamedTuple):
    """A `rules` record of availability_sql, field by field."""

    weekday: int
    start_time: time
    end_time: time
    time_zone: str
    effective_from: date | None
    effective_until: date | None
    id: str
    created_at: datetime
    coach_id: uuid.UUID


class OverrideRecord(NamedTuple):
    """An `overrides` record of availability_sql, field by field."""

    day: date
    kind: str
    time_zone: str
    start_time: time | None
    end_time: time | None
    id: str
    created_at: datetime
    coach_id: uuid.UUID


def availability_records(
    coach_id: uuid.UUID, rules: Sequence[Sequence[Any]], overrides: Sequence[Sequence[Any]]
) -> tuple[list[RuleRecord], list[OverrideRecord]]:
    """availability_sql's two arrays (one coach's) as named records, which
    schemas.availability_out reads as it reads the models."""
    return (
        [RuleRecord._make((*r, coach_id)) for r in rules],
        [OverrideRecord._make((*o, coach_id)) for o in overrides],
    )


def availability_of(
    rules: Sequence[RuleRecord], overrides: Sequence[OverrideRecord]
) -> tuple[list[slots.WeeklyHours], list[slots.DateOverride]]:
    """The hours and overrides of availability_sql's records."""
    return (
        [slots.WeeklyHours(*r[:6]) for r in rules],
        [slots.DateOverride(*o[:5]) for o in overrides],
    )


async def is_offered(
    session: AsyncSession,
    session_type: SessionType,
    start: datetime,
    *,
    now: datetime,
    settings: Settings,
) -> bool:
    """Whether the coach's availability offers `start` for this type (as offered_starts
    would list it). A step (caller's transaction, caller's tenant)."""
    one = timedelta(microseconds=1)
    return start in await offered_starts(
        session, session_type, start, start + one, now=now, settings=settings
    )
