"""Who may book, see and cancel sessions.

An ATHLETE books and holds for themselves; a SCHEDULER or ADMIN for any athlete of the
tenant; nobody else books. A session is seen by its athlete, its coach, and every
SCHEDULER and ADMIN; to anyone else (and across tenants) it does not exist. Its athlete
may cancel it until the cancellation cutoff; its coach, SCHEDULERs and ADMINs always may.
"""

import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.caller import Caller
from app.auth.permissions import require_role
from app.bookings.models import CoachingSession
from app.infra.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.tenants.models import Role, TenantMembership

# The people who run the calendar: they book for anyone and see every session.
DESK = (Role.ADMIN, Role.SCHEDULER)


async def athlete_to_book_for(
    session: AsyncSession, caller: Caller, athlete_id: uuid.UUID | None
) -> uuid.UUID:
    """The athlete a booking or hold is for; Forbidden or NotFound if the caller may not
    book for them. A step: runs in the transaction it is given."""
    if caller.has_role(Role.ATHLETE):
        if athlete_id is not None and athlete_id != caller.user_id:
            raise Forbidden("An athlete books only for themselves.")
        return caller.user_id
    require_role(caller, *DESK)
    if athlete_id is None:
        raise ValidationFailed("athlete_id is required when booking for an athlete.")
    role = await session.scalar(
        select(TenantMembership.role).where(
            TenantMembership.tenant_id == caller.tenant_id, TenantMembership.user_id == athlete_id
        )
    )
    if role != Role.ATHLETE:
        raise NotFound("Athlete not found.")
    return athlete_id


def sees(caller: Caller, coaching_session: CoachingSession) -> bool:
    return (
        caller.has_role(*DESK)
        or coaching_session.athlete_id == caller.user_id
        or coaching_session.coach_id == caller.user_id
    )


def visible_sessions(caller: Caller) -> ColumnElement[bool]:
    """The listing's filter: the sessions `sees` admits."""
    if caller.has_role(*DESK):
        return true()
    return or_(
        CoachingSession.athlete_id == caller.user_id, CoachingSession.coach_id == caller.user_id
    )


def check_visible(caller: Caller, coaching_session: CoachingSession | None) -> CoachingSession:
    if coaching_session is None or not sees(caller, coaching_session):
        raise NotFound("Session not found.")
    return coaching_session


def check_can_cancel(
    caller: Caller, coaching_session: CoachingSession, *, cutoff: timedelta, now: datetime
) -> None:
    """The coach and the desk always may; the athlete until `cutoff` before the start."""
    check_visible(caller, coaching_session)
    if caller.has_role(*DESK) or coaching_session.coach_id == caller.user_id:
        return
    if now > coaching_session.starts_at - cutoff:
        minutes = int(cutoff.total_seconds() // 60)
        raise Conflict(
            f"Athletes may cancel up to {minutes} minutes before the session; ask the coach.",
            cutoff_minutes=minutes,
        )


def check_owns_hold(caller: Caller, hold: CoachingSession | None) -> CoachingSession:
    """A hold is its maker's (or the desk's, which may release any); else NotFound."""
    if hold is None or not (hold.booked_by == caller.user_id or caller.has_role(*DESK)):
        raise NotFound("Hold not found.")
    return hold
