"""Calendars of coaching sessions: per-user feed tokens, the feed calendar apps subscribe
to, and the .ics invitations the notifications emails carry.

The feed is fetched without a bearer token (calendar apps can't send one), so its token
names its tenant: `<tenant uuid hex>.<random>` (app/auth/security.py OpaqueToken), of which
only the HMAC is stored. The tenant prefix tells the feed which tenant's rows to look in;
changing it only moves the lookup to a tenant where the HMAC (which covers the prefix too)
matches nothing. A wrong, revoked or orphaned token (its user no longer a member, or the
tenant suspended) gets the same 404.

Cancelled sessions are left out of the feed rather than listed as STATUS:CANCELLED: a feed
is a snapshot that subscribers replace on each refresh, so the event disappears, while
some subscribers (Google Calendar among them) show a cancelled event of a feed as if it
were on. Invitations and cancellations by email carry the status (METHOD:CANCEL).
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.caller import Caller
from app.auth.models import User
from app.auth.security import OpaqueToken
from app.bookings.models import CalendarFeedToken, CoachingSession, SessionStatus
from app.calendar import ics, permissions
from app.infra.db import Database
from app.infra.errors import Conflict, NotFound, Unauthorized
from app.infra.settings import Settings
from app.scheduling.models import SessionType
from app.tenants.models import Tenant, TenantMembership

log = structlog.get_logger(__name__)

# The feed's range around now: recent history and what is booked ahead.
FEED_PAST = timedelta(days=30)
FEED_AHEAD = timedelta(days=180)
# Live tokens one user may hold (one per calendar app is plenty).
MAX_ACTIVE_TOKENS = 10
FEED_NOT_FOUND = "No such calendar feed."
# Which events' emails carry an invitation, and whether it cancels the session.
INVITATION_EVENTS = {"session.scheduled": False, "session.cancelled": True}


@dataclass(frozen=True)
class IssuedToken:
    """A new feed token: its row, and the secret value, which is shown once."""

    row: CalendarFeedToken
    value: str


async def create_feed_token(db: Database, caller: Caller, *, settings: Settings) -> IssuedToken:
    """A new read-only feed token for the caller's own calendar (at most
    MAX_ACTIVE_TOKENS live ones: revoke one first)."""
    token = OpaqueToken.new(caller.tenant_id)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        # A soft limit (two concurrent creations may both pass): it bounds clutter, not access.
        live = await session.scalar(
            select(func.count())
            .select_from(CalendarFeedToken)
            .where(permissions.own_tokens(caller), CalendarFeedToken.revoked_at.is_(None))
        )
        if (live or 0) >= MAX_ACTIVE_TOKENS:
            raise Conflict(
                f"At most {MAX_ACTIVE_TOKENS} calendar feeds may be active; revoke one first."
            )
        row = CalendarFeedToken(
            tenant_id=caller.tenant_id,
            user_id=caller.user_id,
            token_hash=token.digest(settings),
        )
        session.add(row)
        await session.flush()
        await session.refresh(row)
    return IssuedToken(row, token.value)


async def list_feed_tokens(db: Database, caller: Caller) -> list[CalendarFeedToken]:
    """The caller's feed tokens (revoked ones too), newest first; never their secrets."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        rows = await session.scalars(
            select(CalendarFeedToken)
            .where(permissions.own_tokens(caller))
            .order_by(CalendarFeedToken.created_at.desc(), CalendarFeedToken.id)
        )
        return list(rows.all())


async def revoke_feed_token(db: Database, caller: Caller, token_id: uuid.UUID) -> None:
    """Revoke one of the caller's feed tokens (again: nothing changes); its feed is 404
    from the commit on."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        found = await session.scalar(
            select(CalendarFeedToken.id).where(
                CalendarFeedToken.id == token_id, permissions.own_tokens(caller)
            )
        )
        if found is None:
            raise NotFound("Calendar feed token not found.")
        await session.execute(
            update(CalendarFeedToken)
            .where(CalendarFeedToken.id == token_id, CalendarFeedToken.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )


async def feed(db: Database, raw_token: str, *, settings: Settings) -> bytes:
    """The .ics of the token's user: their scheduled sessions (as athlete or coach) from
    FEED_PAST ago to FEED_AHEAD ahead. NotFound for any token that doesn't open one."""
    try:
        token = OpaqueToken.parse(raw_token)
    except Unauthorized:
        raise NotFound(FEED_NOT_FOUND) from None
    async with db.transaction(token.tenant_id) as session:
        user_id = await session.scalar(
            select(CalendarFeedToken.user_id).where(
                CalendarFeedToken.tenant_id == token.tenant_id,
                CalendarFeedToken.token_hash == token.digest(settings),
                CalendarFeedToken.revoked_at.is_(None),
            )
        )
        if user_id is None or not await _may_read(session, token.tenant_id, user_id):
            raise NotFound(FEED_NOT_FOUND)
        now = datetime.now(UTC)
        entries = await _entries(
            session, token.tenant_id, user_id, now - FEED_PAST, now + FEED_AHEAD
        )
    return ics.feed(entries, stamp=now)


async def _may_read(session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    member = await session.scalar(
        select(TenantMembership.id).where(
            TenantMembership.tenant_id == tenant_id, TenantMembership.user_id == user_id
        )
    )
    suspended = await session.scalar(select(Tenant.suspended).where(Tenant.id == tenant_id))
    return member is not None and suspended is False


async def _entries(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    start: datetime,
    end: datetime,
) -> list[ics.SessionEntry]:
    rows = (
        await session.execute(
            select(CoachingSession, SessionType.title, SessionType.location)
            .join(SessionType, SessionType.id == CoachingSession.session_type_id)
            .where(
                permissions.sessions_of(tenant_id, user_id),
                CoachingSession.status == SessionStatus.SCHEDULED,
                CoachingSession.starts_at >= start,
                CoachingSession.starts_at < end,
            )
            .order_by(CoachingSession.starts_at, CoachingSession.id)
        )
    ).all()
    people = await _people(
        session, {s.coach_id for s, _, _ in rows} | {s.athlete_id for s, _, _ in rows}
    )
    return [
        ics.SessionEntry(
            session_id=s.id,
            title=title,
            starts_at=s.starts_at,
            ends_at=s.ends_at,
            location=location,
            coach=people.get(s.coach_id),
            athlete=people.get(s.athlete_id),
        )
        for s, title, location in rows
    ]


async def _people(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, ics.Person]:
    """Members of the transaction's tenant among `ids` (RLS hides everyone else)."""
    if not ids:
        return {}
    rows = await session.execute(select(User.id, User.email, User.name).where(User.id.in_(ids)))
    return {user_id: ics.Person(email, name) for user_id, email, name in rows.all()}


async def session_invitation(
    session: AsyncSession, event_type: str, payload: Mapping[str, Any], *, stamp: datetime
) -> tuple[ics.Method, bytes] | None:
    """The .ics an email about a session event carries (METHOD REQUEST for
    session.scheduled, CANCEL for session.cancelled), from the event's payload; None for
    other events or a payload that doesn't describe a session. A step: runs in the
    caller's transaction, in the event's tenant."""
    if event_type not in INVITATION_EVENTS:
        return None
    try:
        session_id = uuid.UUID(str(payload["session_id"]))
        coach_id = uuid.UUID(str(payload["coach_id"]))
        athlete_id = uuid.UUID(str(payload["athlete_id"]))
        starts_at = datetime.fromisoformat(str(payload["starts_at"]))
        ends_at = datetime.fromisoformat(str(payload["ends_at"]))
        title = str(payload.get("title") or "Coaching session")
        location = payload.get("location")
        entry_location = str(location) if location else None
        if starts_at.tzinfo is None or ends_at.tzinfo is None:
            raise ValueError("times without an offset")
    except (KeyError, ValueError, TypeError) as exc:
        log.warning("session_invitation_skipped", event_type=event_type, error=str(exc))
        return None
    people = await _people(session, {coach_id, athlete_id})
    entry = ics.SessionEntry(
        session_id=session_id,
        title=title,
        starts_at=starts_at,
        ends_at=ends_at,
        location=entry_location,
        coach=people.get(coach_id),
        athlete=people.get(athlete_id),
        cancelled=INVITATION_EVENTS[event_type],
    )
    return ics.invitation(entry, stamp=stamp)
