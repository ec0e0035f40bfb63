"""Tenant details, invitations, members and their roles.

Each public function is one unit of work for a signed-in caller: it checks the caller's
role (`app/tenants/permissions.py`) first, then opens its own transaction in the caller's
tenant (docs/architecture.md, "The service contract").
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth import emails
from app.auth.caller import Caller
from app.auth.models import RefreshToken, User
from app.auth.security import OpaqueToken
from app.infra.db import Database
from app.infra.errors import Conflict, Gone, NotFound
from app.infra.mail import deliver
from app.infra.pagination import Page, after_cursor, page_of
from app.infra.request_meta import RequestMeta
from app.infra.settings import Settings
from app.spaces.models import SpaceMember
from app.tenants.models import Invitation, Role, Tenant, TenantMembership
from app.tenants.permissions import require_admin, require_own_tenant, require_staff


@dataclass(frozen=True)
class Member:
    user_id: uuid.UUID
    name: str
    email: str
    role: str
    joined_at: datetime
    membership_id: uuid.UUID


async def get_tenant(db: Database, caller: Caller, tenant_id: uuid.UUID) -> Tenant:
    """The caller's own tenant (any member may read it)."""
    require_own_tenant(caller, tenant_id)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("Tenant not found.")
    return tenant


@dataclass(frozen=True)
class InvitationSent:
    invitation: Invitation
    # Whether the SMTP server took the mail; if not, resend_invitation() tries again.
    email_sent: bool


async def invite(
    db: Database,
    caller: Caller,
    tenant_id: uuid.UUID,
    email: str,
    role: Role,
    meta: RequestMeta | None,
    *,
    settings: Settings,
) -> InvitationSent:
    """Create a single-use, expiring invitation and mail its token to the invitee, after
    the commit (ADMIN only). The token goes nowhere else: not to the inviting admin (who
    could use it to act as the invitee) and not into any table (only its HMAC is stored)."""
    require_admin(caller)
    require_own_tenant(caller, tenant_id)
    email = email.lower()
    token = OpaqueToken.new(tenant_id)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        already = await session.scalar(
            select(TenantMembership.id)
            .join(User, User.id == TenantMembership.user_id)
            .where(User.email == email)
        )
        if already is not None:
            raise Conflict("That person is already a member.")
        tenant_name = await session.scalar(select(Tenant.name).where(Tenant.id == tenant_id))
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
    mail = emails.invitation(settings, email, tenant_name or "", role, token.value)
    return InvitationSent(invitation, await deliver(settings, mail))


async def resend_invitation(
    db: Database,
    caller: Caller,
    tenant_id: uuid.UUID,
    invitation_id: uuid.UUID,
    meta: RequestMeta | None,
    *,
    settings: Settings,
) -> InvitationSent:
    """Mail an open invitation again with a new token (the old one stops working) and a
    new expiry, for a mail that was lost or never sent (ADMIN only)."""
    require_admin(caller)
    require_own_tenant(caller, tenant_id)
    token = OpaqueToken.new(tenant_id)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        invitation = await session.scalar(
            select(Invitation).where(Invitation.id == invitation_id).with_for_update()
        )
        if invitation is None:
            raise NotFound("Invitation not found.")
        if invitation.accepted_at is not None:
            raise Gone("This invitation has already been used.")
        tenant_name = await session.scalar(select(Tenant.name).where(Tenant.id == tenant_id))
        invitation.token_hash = token.digest(settings)
        invitation.expires_at = datetime.now(UTC) + timedelta(
            seconds=settings.invitation_ttl_seconds
        )
        audit.record_by(
            session,
            caller,
            action="member.invitation_resent",
            meta=meta,
            target_type="invitation",
            target_id=invitation.id,
        )
    mail = emails.invitation(
        settings, invitation.email, tenant_name or "", invitation.role, token.value
    )
    return InvitationSent(invitation, await deliver(settings, mail))


async def list_members(
    db: Database, caller: Caller, tenant_id: uuid.UUID, *, limit: int, cursor: str | None
) -> Page[Member]:
    """The tenant's members, oldest first, a page at a time (staff only, not athletes)."""
    require_staff(caller)
    require_own_tenant(caller, tenant_id)
    query = after_cursor(
        select(TenantMembership, User).join(User, User.id == TenantMembership.user_id),
        TenantMembership.created_at,
        TenantMembership.id,
        cursor,
    ).limit(limit + 1)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        rows = (await session.execute(query)).all()
    members = [Member(u.id, u.name, u.email, m.role, m.created_at, m.id) for m, u in rows]
    return page_of(members, limit, lambda m: (m.joined_at, m.membership_id))


async def _lock_admins(session: AsyncSession, tenant_id: uuid.UUID) -> set[uuid.UUID]:
    """Lock the tenant's ADMIN memberships and return who holds them.

    Every change that could leave a tenant without an ADMIN takes these locks first, in
    one order, before touching its target: two admins demoting or removing each other at
    once then run one after the other, and the second sees the first's result (a row that
    stopped being ADMIN while we waited drops out of the set when the lock is granted).
    """
    held = await session.scalars(
        select(TenantMembership.user_id)
        .where(TenantMembership.tenant_id == tenant_id, TenantMembership.role == Role.ADMIN)
        .order_by(TenantMembership.id)
        .with_for_update()
    )
    return set(held)


def _keep_an_admin(admins: set[uuid.UUID], leaving: uuid.UUID) -> None:
    if not admins - {leaving}:
        raise Conflict("An organisation needs at least one ADMIN.")


async def _end_sessions(session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """Revoke the member's refresh-token families in this tenant: their refresh tokens stop
    working, and so do their access tokens (current_caller checks the family)."""
    await session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.tenant_id == tenant_id,
            RefreshToken.user_id == user_id,
            RefreshToken.revoked_at.is_(None),
        )
        .values(revoked_at=func.now())
    )


async def change_role(
    db: Database,
    caller: Caller,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    role: Role,
    meta: RequestMeta | None,
) -> Member:
    """Give a member another role (ADMIN only; never taking the last ADMIN's). The
    member's sessions end, so they sign in again under the new role."""
    require_admin(caller)
    require_own_tenant(caller, tenant_id)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        admins = await _lock_admins(session, tenant_id) if role != Role.ADMIN else set()
        row = (
            await session.execute(
                select(TenantMembership, User)
                .join(User, User.id == TenantMembership.user_id)
                .where(TenantMembership.tenant_id == tenant_id, TenantMembership.user_id == user_id)
                .with_for_update(of=TenantMembership)
            )
        ).first()
        if row is None:
            raise NotFound("Member not found.")
        membership, user = row
        previous = membership.role
        if previous != role:
            if previous == Role.ADMIN:
                _keep_an_admin(admins, user_id)
            membership.role = role
            await _end_sessions(session, tenant_id, user_id)
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


async def remove_member(
    db: Database,
    caller: Caller,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    meta: RequestMeta | None,
) -> None:
    """Remove someone from the organisation (ADMIN only; never the last ADMIN): their
    membership and space memberships go, and their sessions end at once."""
    require_admin(caller)
    require_own_tenant(caller, tenant_id)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        admins = await _lock_admins(session, tenant_id)
        membership = await session.scalar(
            select(TenantMembership)
            .where(TenantMembership.tenant_id == tenant_id, TenantMembership.user_id == user_id)
            .with_for_update()
        )
        if membership is None:
            raise NotFound("Member not found.")
        if membership.role == Role.ADMIN:
            _keep_an_admin(admins, user_id)
        await session.delete(membership)
        # Spaces they were in would otherwise let them back in if they are invited again.
        await session.execute(
            delete(SpaceMember).where(
                SpaceMember.tenant_id == tenant_id, SpaceMember.user_id == user_id
            )
        )
        await _end_sessions(session, tenant_id, user_id)
        audit.record_by(
            session,
            caller,
            action="member.removed",
            meta=meta,
            target_type="user",
            target_id=user_id,
            details={"role": membership.role},
        )


async def set_cancellation_cutoff(
    db: Database,
    caller: Caller,
    tenant_id: uuid.UUID,
    minutes: int | None,
    meta: RequestMeta | None,
) -> int | None:
    """How long before a session its athlete may still cancel it (ADMIN only); None: the
    platform's BOOKING_CANCELLATION_CUTOFF_MINUTES. Coaches and the desk always may."""
    require_admin(caller)
    require_own_tenant(caller, tenant_id)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        tenant = await session.get(Tenant, tenant_id, with_for_update=True)
        if tenant is None:
            raise NotFound("Tenant not found.")
        previous = tenant.booking_cancellation_cutoff_minutes
        tenant.booking_cancellation_cutoff_minutes = minutes
        audit.record_by(
            session,
            caller,
            action="tenant.cancellation_cutoff_changed",
            meta=meta,
            target_type="tenant",
            target_id=tenant_id,
            details={"from": previous, "to": minutes},
        )
    return minutes
