"""Holds, bookings, cancellations and reschedules; the sessions list; a coach's open slots.

What is taken of a coach's time is a CoachBlock (app/bookings/models.py): one per private
session or hold, one per group-clinic instance whose places are counted under its row
lock. The exclusion constraint on coach_blocks makes two overlapping blocks of a coach
impossible, so a booking simply inserts its block: the loser of a race gets the
constraint's error, which is a 409 here, never a 500.

A place is live while its session is scheduled, or held with hold_expires_at in the
future; a block without live places is dead. Nothing has to run for an expired hold to
free its time: the open-slots read ignores dead blocks, and a booking whose insert meets
a block deletes the dead ones in its way (in a transaction of its own) and tries once
more. Every lock is taken block first, then session row, so no two of these transactions
wait on each other in a circle.
"""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import asyncpg
import orjson
from sqlalchemy import ColumnElement, and_, delete, exists, or_, select, update
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.caller import Caller
from app.bookings import permissions
from app.bookings.models import CoachBlock, CoachingSession, SessionStatus
from app.events.outbox import add_event, event_row
from app.infra.db import Database, tenant_connection
from app.infra.errors import Conflict, NotFound, ValidationFailed
from app.infra.pagination import Page, after_cursor, page_of
from app.infra.settings import Settings
from app.scheduling import service as scheduling
from app.scheduling import slots as slot_math
from app.scheduling.models import SessionType
from app.tenants.models import Role, Tenant

EXCLUSION_VIOLATION = "23P01"
# Deadlock detected, serialization failure, a lock not had within BOOKING_LOCK_TIMEOUT:
# the transaction was rolled back, try again.
RETRYABLE = frozenset({"40P01", "40001", "55P03"})
# The longest a booking waits for another transaction holding the time it wants (the
# constraint's check waits for a competing insert or delete to end): then it tries once
# more, then answers 409, rather than running into the statement timeout (a 500).
BOOKING_LOCK_TIMEOUT = "5s"
# The longest session a type may have (its duration's check): a session overlapping a
# range starts at most this long before it.
_LONGEST_SESSION = timedelta(minutes=1440)


class _TimeTaken(Exception):
    """A block's insert met another block of the coach (the exclusion constraint)."""

    def __init__(
        self,
        coach_id: uuid.UUID,
        blocked: Range[datetime],
        clinic: tuple[uuid.UUID, datetime] | None,
    ) -> None:
        super().__init__("time taken")
        self.coach_id = coach_id
        self.blocked = blocked
        self.clinic = clinic  # (type, start) of the group clinic the booking would open


def _live(now: datetime) -> ColumnElement[bool]:
    """A place that still takes its block's time at `now`."""
    return or_(
        CoachingSession.status == SessionStatus.SCHEDULED,
        and_(CoachingSession.status == SessionStatus.HELD, CoachingSession.hold_expires_at > now),
    )


def _live_in_block(now: datetime) -> ColumnElement[bool]:
    return exists().where(
        CoachingSession.tenant_id == CoachBlock.tenant_id,
        CoachingSession.block_id == CoachBlock.id,
        _live(now),
    )


def shown_status(place: CoachingSession, now: datetime) -> str:
    """A hold past its expiry reads "expired" whether or not a booking has marked it."""
    if (
        place.status == SessionStatus.HELD
        and place.hold_expires_at is not None
        and place.hold_expires_at <= now
    ):
        return SessionStatus.EXPIRED
    return place.status


# Booking and holds


async def hold(
    db: Database,
    caller: Caller,
    *,
    settings: Settings,
    coach_id: uuid.UUID,
    session_type_id: uuid.UUID,
    start: datetime,
    athlete_id: uuid.UUID | None = None,
) -> CoachingSession:
    """Keep a place for `booking_hold_minutes` while the client checks out: the slot must
    be offered and free (Conflict otherwise). No event: nothing is booked yet."""
    return await _place(
        db,
        caller,
        settings,
        coach_id=coach_id,
        session_type_id=session_type_id,
        start=start,
        athlete_id=athlete_id,
        hold=True,
    )


async def book(
    db: Database,
    caller: Caller,
    *,
    settings: Settings,
    coach_id: uuid.UUID,
    session_type_id: uuid.UUID,
    start: datetime,
    athlete_id: uuid.UUID | None = None,
    hold_id: uuid.UUID | None = None,
) -> CoachingSession:
    """Book a session and write `session.scheduled`, in one transaction. With `hold_id`,
    convert the caller's live hold of exactly this slot (no new block); without, the slot
    must be offered (availability, grid, notice, window) and free. Conflict otherwise."""
    if hold_id is not None:
        return await _convert_hold(
            db,
            caller,
            hold_id,
            coach_id=coach_id,
            session_type_id=session_type_id,
            start=start,
            athlete_id=athlete_id,
        )
    return await _place(
        db,
        caller,
        settings,
        coach_id=coach_id,
        session_type_id=session_type_id,
        start=start,
        athlete_id=athlete_id,
        hold=False,
    )


async def _place(
    db: Database,
    caller: Caller,
    settings: Settings,
    *,
    coach_id: uuid.UUID,
    session_type_id: uuid.UUID,
    start: datetime,
    athlete_id: uuid.UUID | None,
    hold: bool,
) -> CoachingSession:
    """A new place for the athlete the caller may book for: a hold of
    `booking_hold_minutes`, or a booked session; tried once more if taken time may be
    freed (_once_more_if_taken)."""
    athlete = await _athlete(db, caller, athlete_id)

    async def attempt() -> CoachingSession:
        now = datetime.now(UTC)
        return await _place_raw(
            db,
            caller,
            settings,
            coach_id=coach_id,
            session_type_id=session_type_id,
            start=start,
            athlete_id=athlete,
            now=now,
            hold_until=now + timedelta(minutes=settings.booking_hold_minutes) if hold else None,
        )

    return await _once_more_if_taken(db, caller, attempt)


async def _athlete(db: Database, caller: Caller, athlete_id: uuid.UUID | None) -> uuid.UUID:
    """permissions.athlete_to_book_for. An athlete booking for themselves needs no query
    (the session is never used, so it opens no connection); the desk's check of the
    athlete's membership reads it here, and _place_raw checks it again, locked, in the
    booking's own transaction."""
    async with db.session(caller.tenant_id, caller.user_id) as session:
        return await permissions.athlete_to_book_for(session, caller, athlete_id)


async def release_hold(db: Database, caller: Caller, hold_id: uuid.UUID) -> None:
    """Give a held place back now (its maker, or the desk). Releasing a hold that has
    already expired or been released does nothing; a converted one is a Conflict."""
    now = datetime.now(UTC)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        held = permissions.check_owns_hold(caller, await session.get(CoachingSession, hold_id))
        held = await _lock(session, held)
        if held.status == SessionStatus.SCHEDULED:
            raise Conflict("This hold became a booking: cancel the session instead.")
        if held.status != SessionStatus.HELD:
            return
        held.status = SessionStatus.EXPIRED
        held.hold_expires_at = min(held.hold_expires_at or now, now)
        await session.flush()
        await _drop_block_if_dead(session, held.block_id, now)


async def _convert_hold(
    db: Database,
    caller: Caller,
    hold_id: uuid.UUID,
    *,
    coach_id: uuid.UUID,
    session_type_id: uuid.UUID,
    start: datetime,
    athlete_id: uuid.UUID | None,
) -> CoachingSession:
    now = datetime.now(UTC)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        athlete = await permissions.athlete_to_book_for(session, caller, athlete_id)
        held = await session.get(CoachingSession, hold_id)
        if held is None or held.booked_by != caller.user_id:
            raise NotFound("Hold not found.")
        if (held.coach_id, held.session_type_id, held.starts_at, held.athlete_id) != (
            coach_id,
            session_type_id,
            start,
            athlete,
        ):
            raise Conflict("The hold is for another slot or athlete.", code="hold-mismatch")
        # Under the block's lock: a booking freeing dead blocks either ran first (the block
        # is gone) or waits and then sees the place scheduled.
        held = await _lock(session, held)
        if (
            held.status != SessionStatus.HELD
            or held.block_id is None
            or held.hold_expires_at is None
            or held.hold_expires_at <= now
        ):
            raise Conflict("The hold has expired or was released.", code="hold-expired")
        held.status = SessionStatus.SCHEDULED
        held.hold_expires_at = None
        session_type = await session.get(SessionType, held.session_type_id)
        assert session_type is not None  # a foreign key
        _scheduled_event(session, held, session_type)
    return held


async def _once_more_if_taken[T](
    db: Database, caller: Caller, attempt: Callable[[], Awaitable[T]]
) -> T:
    """Run a unit of work that inserts a block; if the insert met another block, delete
    the dead blocks in its way (in a transaction of their own) and run it once more. The
    second try also lets the losers of a race to open a group clinic join its block, and
    the loser of a deadlock (two reschedules swapping times wait on each other's deleted
    block) try again."""
    try:
        return await attempt()
    except _TimeTaken as taken:
        if not await _free_dead_blocks(db, caller, taken):
            raise Conflict("That time is taken.", code="slot-taken") from None
    except (DBAPIError, asyncpg.PostgresError) as exc:
        if _sqlstate(exc) not in RETRYABLE:
            raise
    try:
        return await attempt()
    except _TimeTaken:
        raise Conflict("That time is taken.", code="slot-taken") from None
    except (DBAPIError, asyncpg.PostgresError) as exc:
        if _sqlstate(exc) not in RETRYABLE:
            raise
        raise Conflict("That time is being booked by someone else.", code="slot-taken") from None


def _sqlstate(exc: DBAPIError | asyncpg.PostgresError) -> str | None:
    """The SQLSTATE of a driver error, through SQLAlchemy or raw asyncpg."""
    if isinstance(exc, asyncpg.PostgresError):
        return exc.sqlstate  # type: ignore[no-any-return]
    return getattr(exc.orig, "sqlstate", None)


async def _free_dead_blocks(db: Database, caller: Caller, taken: _TimeTaken) -> bool:
    """Delete the coach's dead blocks in the way of `taken` (marking their expired holds).
    True when another try may succeed: something was freed, nothing is in the way any
    more, or the block met is the clinic the booking would open (someone opened it first:
    join it)."""
    now = datetime.now(UTC)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        # Lock first (in id order: two of these never deadlock), then look at the places in
        # statements of their own: under READ COMMITTED each sees places committed by
        # whoever held a lock we waited for.
        met = (
            await session.execute(
                select(CoachBlock.id, CoachBlock.session_type_id, CoachBlock.starts_at)
                .where(
                    CoachBlock.tenant_id == caller.tenant_id,
                    CoachBlock.coach_id == taken.coach_id,
                    CoachBlock.blocked.overlaps(taken.blocked),
                )
                .order_by(CoachBlock.id)
                .with_for_update()
            )
        ).all()
        if not met:
            return True
        ids = [block_id for block_id, _, _ in met]
        await session.execute(
            update(CoachingSession)
            .where(
                CoachingSession.tenant_id == caller.tenant_id,
                CoachingSession.block_id.in_(ids),
                CoachingSession.status == SessionStatus.HELD,
                CoachingSession.hold_expires_at <= now,
            )
            .values(status=SessionStatus.EXPIRED)
            .execution_options(synchronize_session=False)
        )
        freed = (
            await session.scalars(
                delete(CoachBlock)
                .where(
                    CoachBlock.tenant_id == caller.tenant_id,
                    CoachBlock.id.in_(ids),
                    ~_live_in_block(now),
                )
                .returning(CoachBlock.id)
                .execution_options(synchronize_session=False)
            )
        ).all()
    return bool(freed) or any((t, s) == taken.clinic for _, t, s in met)


# The booking's hot path: raw SQL on the asyncpg connection of a session's transaction in
# the caller's tenant (RLS as for the ORM). The type, its
# coach's hours around the start (for the offered check) in one statement; the block, the
# place and the outbox event in another (a data-modifying CTE). What the ORM path did in
# seven round trips and a few milliseconds of Python (bench/booking.py).

# Built of constants only: values travel as parameters.
_BOOKING_READ = (
    "SELECT t.title, t.location, t.duration_minutes, t.buffer_before_minutes,"  # noqa: S608
    " t.buffer_after_minutes, t.capacity, t.min_notice_minutes, t.booking_window_days, "
    + scheduling.availability_sql("t.coach_id", "$3::date", "$4::date")
    + " FROM session_types t WHERE t.id = $1 AND t.coach_id = $2 AND t.active"
)
# A clinic's block, locked; its live places in a statement of their own (after the lock,
# so that under READ COMMITTED it sees what whoever held the lock committed).
_CLINIC_BLOCK = (
    "SELECT id, capacity FROM coach_blocks WHERE coach_id = $1 AND session_type_id = $2"
    " AND starts_at = $3 FOR UPDATE"
)
# The athlete a desk books for, still an ATHLETE of the tenant (RLS adds the tenant); the
# row stays locked until the booking commits, so a removal or role change waits for it.
_ATHLETE_STILL_MEMBER = "SELECT role FROM tenant_memberships WHERE user_id = $1 FOR SHARE"
_LIVE_ATHLETES = (
    "SELECT athlete_id FROM coaching_sessions WHERE block_id = $1"
    " AND (status = 'scheduled' OR (status = 'held' AND hold_expires_at > $2))"
)
# $1 block, $2 tenant, $3 coach, $4 type, $5 starts_at, $6 ends_at, $7-$8 blocked, $9
# capacity, $10 place, $11 athlete, $12 status, $13 hold_expires_at, $14 booked_by; the
# event: $15 id, $16 type, $17 aggregate type, $18 aggregate id, $19 payload.
_NEW_BLOCK = (
    "new_block AS (INSERT INTO coach_blocks (id, tenant_id, coach_id, session_type_id,"
    " starts_at, ends_at, blocked, capacity) VALUES ($1, $2, $3, $4, $5, $6,"
    " tstzrange($7, $8, '[)'), $9)), "
)
_NEW_PLACE = (
    "new_place AS (INSERT INTO coaching_sessions (id, tenant_id, block_id, coach_id,"
    " athlete_id, session_type_id, starts_at, ends_at, status, hold_expires_at, booked_by)"
    " VALUES ($10, $2, $1, $3, $11, $4, $5, $6, $12, $13, $14) RETURNING created_at)"
)
_NEW_EVENT = (
    ", new_event AS (INSERT INTO outbox_events (id, tenant_id, event_type, aggregate_type,"
    " aggregate_id, payload) VALUES ($15, $2, $16, $17, $18, $19::jsonb))"
)
# A clinic's join names the block's unused parameters too, typed, so the statement prepares.
_JOIN_TYPES = "SELECT created_at, $7::timestamptz, $8::timestamptz, $9::int FROM new_place"
_INSERTS = {
    (new_block, event): "WITH "  # noqa: S608 (constants only)
    + (_NEW_BLOCK if new_block else "")
    + _NEW_PLACE
    + (_NEW_EVENT if event else "")
    + (" SELECT created_at FROM new_place" if new_block else " " + _JOIN_TYPES)
    for new_block in (True, False)
    for event in (True, False)
}


@asynccontextmanager
async def _driver_transaction(db: Database, caller: Caller) -> AsyncIterator[asyncpg.Connection]:
    """The asyncpg connection under a session's transaction in the caller's tenant (begun,
    tenant set, committed or rolled back by db.transaction): raw statements on a write
    path, still through the session (docs/architecture.md point 8)."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection
        await driver.execute(f"SET LOCAL lock_timeout = '{BOOKING_LOCK_TIMEOUT}'")
        yield driver


async def _place_raw(
    db: Database,
    caller: Caller,
    settings: Settings,
    *,
    coach_id: uuid.UUID,
    session_type_id: uuid.UUID,
    start: datetime,
    athlete_id: uuid.UUID,
    now: datetime,
    hold_until: datetime | None = None,
) -> CoachingSession:
    """The athlete's place at `start`, as _bookable_type, _check_offered and _take_place
    give it, and for a booking (no `hold_until`) its `session.scheduled` event: one
    transaction. Raises _TimeTaken when the new block meets another."""
    start = start.astimezone(UTC)
    day = start.date()
    async with _driver_transaction(db, caller) as conn:
        if athlete_id != caller.user_id:
            # Checked before (permissions.athlete_to_book_for); again here, in the
            # booking's own transaction, so a member removed since is never booked.
            if await conn.fetchval(_ATHLETE_STILL_MEMBER, athlete_id) != Role.ATHLETE:
                raise NotFound("Athlete not found.")
        row = await conn.fetchrow(
            _BOOKING_READ,
            session_type_id,
            coach_id,
            day - timedelta(days=2),
            day + timedelta(days=3),
        )
        if row is None:
            raise NotFound("Session type not found.")
        offer = scheduling.Offer(
            row["duration_minutes"], row["min_notice_minutes"], row["booking_window_days"]
        )
        hours, overrides = scheduling.availability_of(row["rules"], row["overrides"])
        if not offer.offers(hours, overrides, start, now=now, settings=settings):
            raise _not_offered()
        capacity: int = row["capacity"]
        ends_at = start + timedelta(minutes=row["duration_minutes"])
        block_id: str | uuid.UUID | None = None
        if capacity > 1:
            block = await conn.fetchrow(_CLINIC_BLOCK, coach_id, session_type_id, start)
            if block is not None:
                block_id = block["id"]
                athletes = [str(r[0]) for r in await conn.fetch(_LIVE_ATHLETES, block_id, now)]
                if str(athlete_id) in athletes:
                    raise Conflict(
                        "The athlete already has a place in this session.", code="booked"
                    )
                if len(athletes) >= block["capacity"]:
                    raise Conflict("This session is full.", code="full")
        new_block = block_id is None
        if new_block:
            block_id = uuid.uuid4()
        place = CoachingSession(
            id=uuid.uuid4(),
            tenant_id=caller.tenant_id,
            block_id=uuid.UUID(str(block_id)),
            coach_id=coach_id,
            athlete_id=athlete_id,
            session_type_id=session_type_id,
            starts_at=start,
            ends_at=ends_at,
            status=SessionStatus.HELD if hold_until else SessionStatus.SCHEDULED,
            hold_expires_at=hold_until,
            booked_by=caller.user_id,
        )
        event: list[Any] = [None] * 5
        if hold_until is None:
            values = event_row(
                **_scheduled_event_fields(place, row["title"], row["location"]),
            )
            event = [
                values["id"],
                values["event_type"],
                values["aggregate_type"],
                values["aggregate_id"],
                orjson.dumps(values["payload"]).decode(),
            ]
        blocked = (
            start - timedelta(minutes=row["buffer_before_minutes"]),
            ends_at + timedelta(minutes=row["buffer_after_minutes"]),
        )
        try:
            place.created_at = await conn.fetchval(
                _INSERTS[new_block, hold_until is None],
                block_id,
                caller.tenant_id,
                coach_id,
                session_type_id,
                start,
                ends_at,
                *(blocked if new_block else (None, None)),
                capacity if new_block else None,
                place.id,
                athlete_id,
                place.status,
                hold_until,
                caller.user_id,
                *(event if hold_until is None else ()),
            )
        except asyncpg.ExclusionViolationError as exc:
            clinic = (session_type_id, start) if capacity > 1 else None
            raise _TimeTaken(coach_id, Range(*blocked, bounds="[)"), clinic) from exc
    return place


def _not_offered() -> Conflict:
    return Conflict(
        "That time is not offered: outside the coach's availability, off the slot grid, "
        "too soon or too far ahead.",
        code="not-offered",
    )


async def _bookable_type(
    session: AsyncSession, coach_id: uuid.UUID, session_type_id: uuid.UUID
) -> SessionType:
    session_type = await scheduling.session_type_for_booking(session, session_type_id)
    if session_type.coach_id != coach_id:
        raise NotFound("Session type not found.")
    return session_type


async def _check_offered(
    session: AsyncSession,
    session_type: SessionType,
    start: datetime,
    *,
    now: datetime,
    settings: Settings,
) -> None:
    if not await scheduling.is_offered(session, session_type, start, now=now, settings=settings):
        raise _not_offered()


async def _take_place(
    session: AsyncSession,
    caller: Caller,
    session_type: SessionType,
    *,
    start: datetime,
    athlete_id: uuid.UUID,
    now: datetime,
    hold_until: datetime | None = None,
) -> CoachingSession:
    """The athlete's place at `start`: in a new block (a private session, or a clinic's
    first place), or in the clinic's block, counted under its lock. Raises _TimeTaken when
    the new block meets another; Conflict when the clinic is full. A step."""
    start = start.astimezone(UTC)
    ends_at = start + timedelta(minutes=session_type.duration_minutes)
    block: CoachBlock | None = None
    if session_type.capacity > 1:
        block = await session.scalar(
            select(CoachBlock)
            .where(
                CoachBlock.tenant_id == caller.tenant_id,
                CoachBlock.coach_id == session_type.coach_id,
                CoachBlock.session_type_id == session_type.id,
                CoachBlock.starts_at == start,
            )
            .with_for_update()
        )
        if block is not None:
            athletes = list(
                await session.scalars(
                    select(CoachingSession.athlete_id).where(
                        CoachingSession.tenant_id == caller.tenant_id,
                        CoachingSession.block_id == block.id,
                        _live(now),
                    )
                )
            )
            if athlete_id in athletes:
                raise Conflict("The athlete already has a place in this session.", code="booked")
            if len(athletes) >= block.capacity:
                raise Conflict("This session is full.", code="full")
    if block is None:
        blocked = Range(
            start - timedelta(minutes=session_type.buffer_before_minutes),
            ends_at + timedelta(minutes=session_type.buffer_after_minutes),
            bounds="[)",
        )
        # The rollback of a failed insert expires every loaded row: keep what _TimeTaken needs.
        block_coach = session_type.coach_id
        clinic = (session_type.id, start) if session_type.capacity > 1 else None
        block = CoachBlock(
            id=uuid.uuid4(),
            tenant_id=caller.tenant_id,
            coach_id=session_type.coach_id,
            session_type_id=session_type.id,
            starts_at=start,
            ends_at=ends_at,
            blocked=blocked,
            capacity=session_type.capacity,
        )
        session.add(block)
        try:
            await session.flush()
        except IntegrityError as exc:
            if _sqlstate(exc) == EXCLUSION_VIOLATION:
                raise _TimeTaken(block_coach, blocked, clinic) from exc
            raise
    place = CoachingSession(
        id=uuid.uuid4(),
        tenant_id=caller.tenant_id,
        block_id=block.id,
        coach_id=session_type.coach_id,
        athlete_id=athlete_id,
        session_type_id=session_type.id,
        starts_at=start,
        ends_at=ends_at,
        status=SessionStatus.HELD if hold_until else SessionStatus.SCHEDULED,
        hold_expires_at=hold_until,
        booked_by=caller.user_id,
    )
    session.add(place)
    await session.flush()
    return place


async def _lock(session: AsyncSession, place: CoachingSession) -> CoachingSession:
    """The place again, its block (if any) and then its row locked. A step."""
    if place.block_id is not None:
        await session.execute(
            select(CoachBlock.id).where(CoachBlock.id == place.block_id).with_for_update()
        )
    locked = await session.scalar(
        select(CoachingSession)
        .where(CoachingSession.id == place.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert locked is not None  # sessions are never deleted
    return locked


async def _drop_block_if_dead(
    session: AsyncSession, block_id: uuid.UUID | None, now: datetime
) -> None:
    """Delete the block (locked by the caller) once no live place is left in it, so its
    time is free at once. A step."""
    if block_id is not None:
        await session.execute(
            delete(CoachBlock)
            .where(CoachBlock.id == block_id, ~_live_in_block(now))
            .execution_options(synchronize_session=False)
        )


def _session_event(
    session: AsyncSession,
    event_type: str,
    place: CoachingSession,
    session_type: SessionType,
    **extra: Any,
) -> None:
    add_event(
        session,
        **_event_fields(event_type, place, session_type.title, session_type.location, **extra),
    )


def _event_fields(
    event_type: str, place: CoachingSession, title: str, location: str | None, **extra: Any
) -> dict[str, Any]:
    """add_event's (and event_row's) arguments for an event about `place`."""
    return {
        "tenant_id": place.tenant_id,
        "event_type": event_type,
        "aggregate_type": "coaching_session",
        "aggregate_id": place.id,
        "payload": {
            "session_id": str(place.id),
            "coach_id": str(place.coach_id),
            "athlete_id": str(place.athlete_id),
            "session_type_id": str(place.session_type_id),
            "title": title,
            "location": location,
            "starts_at": place.starts_at.astimezone(UTC).isoformat(),
            "ends_at": place.ends_at.astimezone(UTC).isoformat(),
            **extra,
        },
    }


def _scheduled_event_fields(
    place: CoachingSession, title: str, location: str | None, **extra: Any
) -> dict[str, Any]:
    return _event_fields(
        "session.scheduled", place, title, location, booked_by=str(place.booked_by), **extra
    )


def _scheduled_event(
    session: AsyncSession, place: CoachingSession, session_type: SessionType, **extra: Any
) -> None:
    add_event(
        session,
        **_scheduled_event_fields(place, session_type.title, session_type.location, **extra),
    )


# Cancelling and rescheduling


async def cancel(
    db: Database, caller: Caller, session_id: uuid.UUID, *, reason: str | None, settings: Settings
) -> CoachingSession:
    """Cancel a scheduled session and write `session.cancelled`, in one transaction: its
    athlete until the cutoff before it starts, its coach and the desk always."""
    now = datetime.now(UTC)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        cancelled, _ = await _cancel_in(
            session, caller, session_id, reason=reason, now=now, settings=settings
        )
    return cancelled


async def reschedule(
    db: Database,
    caller: Caller,
    session_id: uuid.UUID,
    *,
    start: datetime,
    session_type_id: uuid.UUID | None,
    reason: str | None,
    settings: Settings,
) -> CoachingSession:
    """Move a session: cancel it and book the new slot (same coach and athlete; the same
    type unless another of the coach's is given) in one transaction, with both events.
    Allowed to whoever may both cancel it and book for its athlete."""

    async def attempt() -> CoachingSession:
        now = datetime.now(UTC)
        async with db.transaction(caller.tenant_id, caller.user_id) as session:
            old = permissions.check_visible(caller, await session.get(CoachingSession, session_id))
            athlete = await permissions.athlete_to_book_for(session, caller, old.athlete_id)
            session_type = await _bookable_type(
                session, old.coach_id, session_type_id or old.session_type_id
            )
            await _check_offered(session, session_type, start, now=now, settings=settings)
            # The old block goes first, so the new time may overlap the old one.
            old, old_type = await _cancel_in(
                session,
                caller,
                session_id,
                reason=reason or "rescheduled",
                now=now,
                settings=settings,
                announce=False,
            )
            new = await _take_place(
                session, caller, session_type, start=start, athlete_id=athlete, now=now
            )
            _cancelled_event(session, old, old_type, rescheduled_to=str(new.id))
            _scheduled_event(session, new, session_type, rescheduled_from=str(old.id))
        return new

    return await _once_more_if_taken(db, caller, attempt)


async def _cancel_in(
    session: AsyncSession,
    caller: Caller,
    session_id: uuid.UUID,
    *,
    reason: str | None,
    now: datetime,
    settings: Settings,
    announce: bool = True,
) -> tuple[CoachingSession, SessionType]:
    place = permissions.check_visible(caller, await session.get(CoachingSession, session_id))
    place = await _lock(session, place)
    if place.status != SessionStatus.SCHEDULED:
        raise Conflict("Only a scheduled session can be cancelled.", code="not-scheduled")
    cutoff = await _cancellation_cutoff(session, caller.tenant_id, settings)
    permissions.check_can_cancel(caller, place, cutoff=cutoff, now=now)
    place.status = SessionStatus.CANCELLED
    place.cancelled_at = now
    place.cancelled_by = caller.user_id
    place.cancel_reason = reason
    await session.flush()
    await _drop_block_if_dead(session, place.block_id, now)
    session_type = await session.get(SessionType, place.session_type_id)
    assert session_type is not None  # a foreign key
    if announce:
        _cancelled_event(session, place, session_type)
    return place, session_type


def _cancelled_event(
    session: AsyncSession, place: CoachingSession, session_type: SessionType, **extra: Any
) -> None:
    _session_event(
        session,
        "session.cancelled",
        place,
        session_type,
        cancelled_by=str(place.cancelled_by),
        reason=place.cancel_reason,
        **extra,
    )


async def _cancellation_cutoff(
    session: AsyncSession, tenant_id: uuid.UUID, settings: Settings
) -> timedelta:
    minutes = await session.scalar(
        select(Tenant.booking_cancellation_cutoff_minutes).where(Tenant.id == tenant_id)
    )
    if minutes is None:
        minutes = settings.booking_cancellation_cutoff_minutes
    return timedelta(minutes=minutes)


# Reading sessions


async def get_session(db: Database, caller: Caller, session_id: uuid.UUID) -> CoachingSession:
    """One session or hold the caller may see (NotFound otherwise)."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        return permissions.check_visible(caller, await session.get(CoachingSession, session_id))


async def list_sessions(
    db: Database,
    caller: Caller,
    *,
    start: datetime,
    end: datetime,
    limit: int,
    cursor: str | None,
    settings: Settings,
) -> Page[CoachingSession]:
    """Scheduled and cancelled sessions overlapping [start, end) that the caller may see,
    earliest first, keyset-paginated."""
    slot_math.check_range(start, end, settings.scheduling_max_range_days)
    query = select(CoachingSession).where(
        CoachingSession.tenant_id == caller.tenant_id,
        permissions.visible_sessions(caller),
        CoachingSession.status.in_([SessionStatus.SCHEDULED, SessionStatus.CANCELLED]),
        # Bounded on both sides for the (tenant, person, starts_at) indexes.
        CoachingSession.starts_at > start - _LONGEST_SESSION,
        CoachingSession.starts_at < end,
        CoachingSession.ends_at > start,
    )
    query = after_cursor(
        query, CoachingSession.starts_at, CoachingSession.id, cursor, oldest_first=True
    )
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        rows = list((await session.scalars(query.limit(limit + 1))).all())
    return page_of(rows, limit, lambda s: (s.starts_at, s.id))


# Open slots


class OpenSlot(NamedTuple):
    # A tuple: a frozen dataclass's __init__ costs more, once per slot of four weeks.
    session_type_id: str
    start: datetime
    end: datetime
    seats_left: int


@dataclass(frozen=True)
class OpenSlots:
    coach_id: uuid.UUID
    # As availability_sql reads them (the hours first, then id and created_at), in the
    # order coach_availability gives them.
    rules: list[scheduling.RuleRecord]
    overrides: list[scheduling.OverrideRecord]
    slots: list[OpenSlot]  # in the viewer's zone, earliest first


class _LiveBlock(NamedTuple):
    lower: datetime
    upper: datetime
    session_type_id: str
    starts_at: datetime
    seats_left: int


# The longest buffer a type may have (its check): blocks meeting [start - buffer, end +
# longest session + buffer) are all that a slot in [start, end) can meet.
_LONGEST_BUFFER = timedelta(minutes=720)

# Everything the open slots need, in one statement on the read pool: whether the coach is a
# member (another tenant's id is "not found"), the types (one, or all active ones), the
# hours, and the live blocks with their places left. RLS adds the tenant throughout.
_OPEN_SLOTS_READ = (
    "SELECT EXISTS (SELECT 1 FROM tenant_memberships m WHERE m.user_id = $1) AS coach_known,"  # noqa: S608
    " ARRAY(SELECT ROW(t.id::text, t.capacity, t.duration_minutes, t.buffer_before_minutes,"
    " t.buffer_after_minutes, t.min_notice_minutes, t.booking_window_days)"
    " FROM session_types t WHERE t.coach_id = $1 AND t.active"
    " AND ($2::uuid IS NULL OR t.id = $2::uuid) ORDER BY t.created_at, t.id) AS types, "
    + scheduling.availability_sql("$1", "$3::date", "$4::date")
    + ", ARRAY(SELECT ROW(lower(b.blocked), upper(b.blocked), b.session_type_id::text,"
    " b.starts_at, b.capacity - p.live) FROM coach_blocks b CROSS JOIN LATERAL ("
    " SELECT count(*) AS live FROM coaching_sessions s WHERE s.block_id = b.id"
    " AND (s.status = 'scheduled' OR (s.status = 'held' AND s.hold_expires_at > $7))) p"
    " WHERE b.coach_id = $1 AND b.blocked && tstzrange($5, $6, '[)') AND p.live > 0"
    " ORDER BY b.blocked) AS blocks"
)


async def open_slots(
    read_pool: asyncpg.Pool,
    caller: Caller,
    coach_id: uuid.UUID,
    *,
    start: datetime,
    end: datetime,
    time_zone: str,
    session_type_id: uuid.UUID | None,
    settings: Settings,
) -> OpenSlots:
    """The coach's rules and overrides, and the starts in [start, end) a booking would get
    now, for one type or all the coach's active ones: what availability offers
    (app/scheduling's Offer) less what live blocks take, in `time_zone`. A group clinic's
    start whose block has places left stays open. Any member may ask. One read on the raw
    read pool (a measured hot path, docs/architecture.md point 8)."""
    if not slot_math.is_known_zone(time_zone):
        raise ValidationFailed("Unknown time zone: use an IANA name such as Europe/Berlin.")
    slot_math.check_range(start, end, settings.scheduling_max_range_days)
    now = datetime.now(UTC)
    async with tenant_connection(read_pool, caller.tenant_id, caller.user_id) as conn:
        # Overrides dated a day either side of the range: every zone's dates are covered.
        row = await conn.fetchrow(
            _OPEN_SLOTS_READ,
            coach_id,
            session_type_id,
            start.astimezone(UTC).date() - timedelta(days=1),
            end.astimezone(UTC).date() + timedelta(days=1),
            start - _LONGEST_BUFFER,
            end + _LONGEST_SESSION + _LONGEST_BUFFER,
            now,
        )
    assert row is not None  # a SELECT without FROM
    if not row["types"]:
        if session_type_id is not None:
            raise NotFound("Session type not found.")
        if not row["coach_known"]:  # a coach offering nothing yet, or no coach of this tenant?
            raise NotFound("Coach not found.")
    hours, overrides = scheduling.availability_of(row["rules"], row["overrides"])
    blocks = [_LiveBlock(*b) for b in row["blocks"]]
    found: list[OpenSlot] = []
    zone = ZoneInfo(time_zone)
    pieces = _Viewer.pieces(zone, start, end + _LONGEST_SESSION)
    for type_id, capacity, duration, before, after, notice, window in row["types"]:
        offer = scheduling.Offer(duration, notice, window)
        starts = offer.starts(hours, overrides, start, end, now=now, settings=settings)
        shape = _Shape(
            type_id,
            capacity,
            timedelta(minutes=before),
            timedelta(minutes=duration),
            timedelta(minutes=after),
        )
        viewer = (_Viewer(zone, pieces), _Viewer(zone, pieces))
        found += _still_open(shape, starts, blocks, viewer)
    found.sort(key=lambda slot: (slot.start, slot.session_type_id))
    rules, overrides_found = scheduling.availability_records(
        coach_id, row["rules"], row["overrides"]
    )
    return OpenSlots(coach_id, rules, overrides_found, found)


@dataclass(frozen=True)
class _Shape:
    """A session type's times, read once, for a path that visits every slot of four weeks."""

    type_id: str
    capacity: int
    before: timedelta
    length: timedelta
    after: timedelta


class _Viewer:
    """A zone's local times of instants met in order, without a zone lookup per instant:
    over a stretch of constant UTC offset a local time is the stretch's first one plus
    the time since (with that offset as a fixed zone, so a repeated wall-clock hour keeps
    its own offset)."""

    def __init__(self, zone: ZoneInfo, pieces: list[tuple[datetime, datetime, datetime]]) -> None:
        self._zone = zone
        self._pieces = pieces  # (start, end, local time at start) of each stretch
        self._k = 0

    @staticmethod
    def pieces(
        zone: ZoneInfo, lo: datetime, hi: datetime
    ) -> list[tuple[datetime, datetime, datetime]]:
        return [
            (a, b, a.astimezone(timezone(offset)))
            for a, b, offset in slot_math.zone_offsets(zone, lo, hi)
        ]

    def local(self, instant: datetime) -> datetime:
        pieces, k = self._pieces, self._k
        while k + 1 < len(pieces) and pieces[k][1] <= instant:
            k += 1
        self._k = k
        a, b, local_a = pieces[k]
        if not a <= instant < b:  # outside the span asked for (never, but exact anyway)
            return instant.astimezone(self._zone)
        return local_a + (instant - a)


def _still_open(
    shape: _Shape,
    starts: Sequence[datetime],
    blocks: Sequence[_LiveBlock],
    viewer: tuple[_Viewer, _Viewer],
) -> list[OpenSlot]:
    """The starts whose blocked time meets no live block but their own clinic's (with
    places left), in the viewer's zone (one _Viewer for starts, one for ends). `starts`
    are in order, and `blocks` are in time order and never overlap (the exclusion
    constraint), so their ends are in order too: the first block that may meet a start
    only moves forward."""
    group = shape.capacity > 1
    type_id, capacity, before, length, after = (
        shape.type_id,
        shape.capacity,
        shape.before,
        shape.length,
        shape.after,
    )
    reach = length + after
    found = []
    at_start, at_end = viewer[0].local, viewer[1].local
    n, i = len(blocks), 0
    for start in starts:
        lower, upper = start - before, start + reach
        while i < n and blocks[i].upper <= lower:
            i += 1
        seats = capacity
        j = i
        while j < n and blocks[j].lower < upper:
            block = blocks[j]
            if group and block.starts_at == start and block.session_type_id == type_id:
                seats = block.seats_left
                j += 1
            else:
                seats = 0
                break
        if seats > 0:
            found.append(OpenSlot(type_id, at_start(start), at_end(start + length), seats))
    return found
