"""Session reminders, 24 hours and 1 hour before: each sent once, never for a cancelled
session.

The scheduler (workers/scheduler.py) runs this as the relay role, which reads no tenant
table: it learns which reminders are due from `due_session_reminders()` (an owner-defined
function, migration 0010, that returns only ids), and sends each in that tenant's
transaction as the runtime role: the session locked and checked again (still scheduled,
still in the window), the reminder recorded in session_reminders and, only if that row is
new, the "session.reminder" outbox event written, in one transaction. A crash, a restart
or a second scheduler racing this one can therefore neither lose a reminder nor send one
twice; the notifications worker turns the event into notifications and emails once.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import structlog
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.bookings.models import CoachingSession, SessionReminder, SessionStatus
from app.events.outbox import add_event
from app.infra.db import Database
from app.scheduling.models import SessionType

log = structlog.get_logger(__name__)

REMINDER_EVENT = "session.reminder"
# How many due reminders one run takes on; the rest wait for the next run.
BATCH_SIZE = 500


@dataclass(frozen=True)
class Window:
    """A reminder of `kind` is due while the session starts in (now + after, now + upto]."""

    kind: str
    after: timedelta
    upto: timedelta

    def is_due(self, starts_at: datetime, now: datetime) -> bool:
        return now + self.after < starts_at <= now + self.upto


# The same windows as due_session_reminders() (migration 0010). They don't overlap: a
# session booked 30 minutes ahead gets only the 1 h reminder, and once the 1 h one is due
# the 24 h one never is again.
WINDOWS = {
    "24h": Window("24h", timedelta(hours=1), timedelta(hours=24)),
    "1h": Window("1h", timedelta(0), timedelta(hours=1)),
}


@dataclass(frozen=True)
class DueReminder:
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    kind: str


async def due_reminders(relay: asyncpg.Connection, limit: int) -> list[DueReminder]:
    """Reminders due and not yet sent, soonest session first; `relay` is a connection as
    the relay role."""
    rows = await relay.fetch(
        "SELECT tenant_id, session_id, kind FROM due_session_reminders($1)", limit
    )
    return [
        DueReminder(uuid.UUID(str(r["tenant_id"])), uuid.UUID(str(r["session_id"])), r["kind"])
        for r in rows
    ]


async def send_reminder(
    db: Database, tenant_id: uuid.UUID, session_id: uuid.UUID, kind: str
) -> bool:
    """Record and announce one reminder in the session's tenant; False if it is not due
    (cancelled, moved out of the window since the listing, or already sent)."""
    window = WINDOWS[kind]
    async with db.transaction(tenant_id) as session:
        # Locked: a cancellation of this session waits for this transaction, or this one
        # finds it cancelled.
        booked = await session.scalar(
            select(CoachingSession)
            .where(CoachingSession.id == session_id, CoachingSession.tenant_id == tenant_id)
            .with_for_update()
        )
        if booked is None or booked.status != SessionStatus.SCHEDULED:
            return False
        # The database's clock, the one the listing used.
        now = await session.scalar(select(func.now()))
        if now is None or not window.is_due(booked.starts_at, now):
            return False
        recorded = await session.scalar(
            insert(SessionReminder)
            .values(tenant_id=tenant_id, session_id=session_id, kind=kind)
            .on_conflict_do_nothing()
            .returning(SessionReminder.session_id)
        )
        if recorded is None:
            return False
        await _announce(session, booked, kind)
    log.info("session_reminder_sent", tenant_id=str(tenant_id), session_id=str(session_id))
    return True


async def _announce(session: AsyncSession, booked: CoachingSession, kind: str) -> None:
    session_type = await session.get(SessionType, booked.session_type_id)
    add_event(
        session,
        tenant_id=booked.tenant_id,
        event_type=REMINDER_EVENT,
        aggregate_type="coaching_session",
        aggregate_id=booked.id,
        payload={
            "session_id": str(booked.id),
            "kind": kind,
            "coach_id": str(booked.coach_id),
            "athlete_id": str(booked.athlete_id),
            "session_type_id": str(booked.session_type_id),
            "title": session_type.title if session_type else "Coaching session",
            "location": session_type.location if session_type else None,
            "starts_at": booked.starts_at.isoformat(),
            "ends_at": booked.ends_at.isoformat(),
        },
    )


async def send_due_reminders(
    relay: asyncpg.Connection, db: Database, *, limit: int = BATCH_SIZE
) -> int:
    """Send up to `limit` due reminders (see send_reminder); returns how many were sent."""
    sent = 0
    for due in await due_reminders(relay, limit):
        sent += await send_reminder(db, due.tenant_id, due.session_id, due.kind)
    return sent
