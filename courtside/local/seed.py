"""Demo data: the "Demo Academy" tenant, its three users, and the demo coach's bookable
hours (idempotent).

Through the API a users row only ever exists for a proven address (sign-up and invitations
go through the mailbox); the demo's rows are written here directly, so they sign in at once.
"""

import asyncio
import uuid
from datetime import time

from sqlalchemy import select

from app.auth.caller import Caller
from app.auth.models import User
from app.auth.security import hash_password
from app.auth.service import find_user_by_email
from app.infra.db import Database
from app.infra.settings import Settings
from app.scheduling import service as scheduling
from app.scheduling.models import SessionType
from app.tenants.models import Role, Tenant, TenantMembership
from app.tenants.provisioning import tenant_id_for_slug

DEMO_SLUG = "demo-academy"
DEMO_NAME = "Demo Academy"
DEMO_USERS = [
    ("admin@demo.com", "admin123", "Demo Admin", Role.ADMIN),
    ("coach@demo.com", "coach123", "Demo Coach", Role.COACH),
    ("athlete@demo.com", "athlete123", "Demo Athlete", Role.ATHLETE),
]
# The demo coach offers a private lesson on weekdays, 09:00-17:00 in this zone.
DEMO_TIME_ZONE = "Europe/London"
DEMO_LESSON = {
    "title": "Private lesson",
    "duration_minutes": 60,
    "buffer_after_minutes": 15,
    "location": "Court 1",
    "min_notice_minutes": 120,
    "booking_window_days": 28,
}


async def seed_demo(settings: Settings) -> uuid.UUID:
    """Ensure the demo tenant and users exist; returns the tenant id."""
    db = Database.from_settings(settings, application_name="courtside-seed")
    tenant_id = tenant_id_for_slug(DEMO_SLUG)
    try:
        async with db.transaction(tenant_id) as session:
            if await session.get(Tenant, tenant_id) is None:
                session.add(Tenant(id=tenant_id, slug=DEMO_SLUG, name=DEMO_NAME))
        for email, password, name, role in DEMO_USERS:
            async with db.transaction(tenant_id) as session:
                known = await find_user_by_email(session, email)
            user_id = known.id if known else uuid.uuid4()
            password_hash = None if known else await asyncio.to_thread(hash_password, password)
            async with db.transaction(tenant_id, user_id) as session:
                if password_hash is not None:
                    session.add(
                        User(
                            id=user_id,
                            email=email,
                            name=name,
                            password_hash=password_hash,
                            default_tenant_id=tenant_id,
                        )
                    )
                    await session.flush()
                member = await session.scalar(
                    select(TenantMembership).where(TenantMembership.user_id == user_id)
                )
                if member is None:
                    session.add(TenantMembership(tenant_id=tenant_id, user_id=user_id, role=role))
            if role == Role.COACH:
                await _seed_lessons(db, Caller(user_id, tenant_id, role))
    finally:
        await db.dispose()
    return tenant_id


async def _seed_lessons(db: Database, coach: Caller) -> None:
    """The coach's lesson and weekday hours, through the scheduling service as the coach
    would add them; once (a coach with any session type is left as they are)."""
    async with db.transaction(coach.tenant_id, coach.user_id) as session:
        offered = await session.scalar(
            select(SessionType.id).where(SessionType.coach_id == coach.user_id).limit(1)
        )
    if offered is not None:
        return
    await scheduling.create_session_type(db, coach, coach_id=None, fields=DEMO_LESSON)
    await scheduling.add_availability(
        db,
        coach,
        coach_id=None,
        time_zone=DEMO_TIME_ZONE,
        effective_from=None,
        effective_until=None,
        rules=[scheduling.NewWeeklyHours(day, time(9), time(17)) for day in range(5)],
        overrides=[],
    )
