"""Tenant details, invitations, members and their roles."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin import service as audit
from app.auth.models import User
from app.auth.security import OpaqueToken
from app.caller import Caller
from app.errors import Conflict, NotFound
from app.pagination import Page, after_cursor, page_of
from app.request_meta import RequestMeta
from app.settings import Settings
from app.tenants.models import Invitation, Role, Tenant, TenantMembership


@dataclass(frozen=True)
class Member:
    user_id: uuid.UUID
    name: str
    email: str
    role: str
    joined_at: datetime
    membership_id: uuid.UUID


# Tenants onboarded by manifest (and the demo tenant) get ids derived from their slug, so
# the operator, the seed and the API agree on a tenant's id without a lookup across tenants.
TENANT_ID_NAMESPACE = uuid.UUID("6f1d9a52-8a4e-4d65-9b0e-0c6c3e3c7a11")


def tenant_id_for_slug(slug: str) -> uuid.UUID:
    return uuid.uuid5(TENANT_ID_NAMESPACE, slug)


def _same_tenant(caller: Caller, tenant_id: uuid.UUID) -> None:
    # Another tenant's id is "not found", never "forbidden": ids don't leak across tenants.
    if tenant_id != caller.tenant_id:
        raise NotFound("Tenant not found.")


async def get_tenant(session: AsyncSession, caller: Caller, tenant_id: uuid.UUID) -> Tenant:
    _same_tenant(caller, tenant_id)
    async with session.begin():
        tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("Tenant not found.")
    return tenant


async def invite(
    session: AsyncSession,
    settings: Settings,
    caller: Caller,
    tenant_id: uuid.UUID,
    email: str,
    role: Role,
    meta: RequestMeta | None,
) -> tuple[Invitation, str]:
    """Create a single-use, expiring invitation; returns it with its one-time token."""
    _same_tenant(caller, tenant_id)
    email = email.lower()
    token = OpaqueToken.new(tenant_id)
    async with session.begin():
        already = await session.scalar(
            select(TenantMembership.id)
            .join(User, User.id == TenantMembership.user_id)
            .where(User.email == email)
        )
        if already is not None:
            raise Conflict("That person is already a member.")
        invitation = Invitation(
            tenant_id=tenant_id,
            email=email,
            role=role,
            token_hash=token.digest(settings),
            invited_by=caller.user_id,
            expires_at=datetime.now(UTC) + timedelta(seconds=settings.invitation_ttl_seconds),
        )
        session.add(invitation)
        await session.flush()
        audit.record_by(
            session,
            caller,
            action="member.invited",
            meta=meta,
            target_type="invitation",
            target_id=invitation.id,
            details={"email": email, "role": role},
        )
    return invitation, token.value


async def list_members(
    session: AsyncSession, caller: Caller, tenant_id: uuid.UUID, *, limit: int, cursor: str | None
) -> Page[Member]:
    _same_tenant(caller, tenant_id)
    query = after_cursor(
        select(TenantMembership, User).join(User, User.id == TenantMembership.user_id),
        TenantMembership.created_at,
        TenantMembership.id,
        cursor,
    ).limit(limit + 1)
    async with session.begin():
        rows = (await session.execute(query)).all()
    members = [Member(u.id, u.name, u.email, m.role, m.created_at, m.id) for m, u in rows]
    return page_of(members, limit, lambda m: (m.joined_at, m.membership_id))


async def change_role(
    session: AsyncSession,
    caller: Caller,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    role: Role,
    meta: RequestMeta | None,
) -> Member:
    _same_tenant(caller, tenant_id)
    async with session.begin():
        row = (
            await session.execute(
                select(TenantMembership, User)
                .join(User, User.id == TenantMembership.user_id)
                .where(TenantMembership.user_id == user_id)
                .with_for_update(of=TenantMembership)
            )
        ).first()
        if row is None:
            raise NotFound("Member not found.")
        membership, user = row
        previous = membership.role
        if previous == Role.ADMIN and role != Role.ADMIN:
            admins = await session.scalar(
                select(func.count())
                .select_from(TenantMembership)
                .where(TenantMembership.role == Role.ADMIN)
            )
            if (admins or 0) <= 1:
                raise Conflict("An organisation needs at least one ADMIN.")
        membership.role = role
        audit.record_by(
            session,
            caller,
            action="member.role_changed",
            meta=meta,
            target_type="user",
            target_id=user_id,
            details={"from": previous, "to": role},
        )
    return Member(user.id, user.name, user.email, role, membership.created_at, membership.id)
