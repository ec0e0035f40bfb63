"""Demo data: the "Demo Academy" tenant and its three users (idempotent).

Through the API a users row only ever exists for a proven address (sign-up and invitations
go through the mailbox); the demo's rows are written here directly, so they sign in at once.
"""

import asyncio
import uuid

from sqlalchemy import select

from app.auth.models import User
from app.auth.security import hash_password
from app.auth.service import find_user_by_email
from app.infra.db import Database
from app.infra.settings import Settings
from app.tenants.models import Role, Tenant, TenantMembership
from app.tenants.provisioning import tenant_id_for_slug

DEMO_SLUG = "demo-academy"
DEMO_NAME = "Demo Academy"
DEMO_USERS = [
    ("admin@demo.com", "admin123", "Demo Admin", Role.ADMIN),
    ("coach@demo.com", "coach123", "Demo Coach", Role.COACH),
    ("athlete@demo.com", "athlete123", "Demo Athlete", Role.ATHLETE),
]


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
    finally:
        await db.dispose()
    return tenant_id
