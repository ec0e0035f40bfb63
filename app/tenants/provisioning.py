"""Tenants onboarded by a Tenant manifest: how the operator changes the tenants domain.

The operator (operator/courtside_operator/reconcile.py) reads the manifest, manages the
tenant's database role and Secret itself, and comes here for everything the API also
reads: the tenant's row (name, limits, suspension), its first ADMIN's invitation, its usage,
and its end. Each function is one unit of work in that tenant's transaction
(`db.transaction(tenant_id)`) on the `Database` the operator hands in; there is no caller,
the platform acts. Each reads the live state first and changes only what differs, so
running it again with the same values does nothing.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.auth import emails
from app.auth.models import User
from app.auth.security import OpaqueToken
from app.infra.db import Database
from app.infra.errors import Conflict
from app.infra.mail import deliver
from app.infra.settings import Settings
from app.media import quota
from app.tenants.models import Invitation, Role, Tenant, TenantMembership
from app.tenants.policy import policy_from_row

# Tenants onboarded by manifest (and the demo tenant) get ids derived from their slug, so
# the operator, the seed and the API agree on a tenant's id without a lookup across tenants.
TENANT_ID_NAMESPACE = uuid.UUID("6f1d9a52-8a4e-4d65-9b0e-0c6c3e3c7a11")


TENANTS_PRIMARY_KEY = "pk_tenants"  # app.infra.db's naming convention, as migrated


def tenant_id_for_slug(slug: str) -> uuid.UUID:
    """The id of the managed tenant with this slug."""
    return uuid.uuid5(TENANT_ID_NAMESPACE, slug)


@dataclass(frozen=True)
class ManagedTenant:
    """A tenant's row as its manifest describes it; None limits mean the platform's."""

    slug: str
    name: str
    suspended: bool
    rate_limits: dict[str, Any] | None
    max_upload_bytes: int | None
    storage_quota_bytes: int | None


class SlugConflict(Conflict):
    """The slug belongs to a tenant that isn't this one: nothing was changed or taken over."""


class SlugClaimed(Conflict):
    """Another Tenant object (`claimant`, its metadata.uid) manages this slug's tenant:
    nothing was changed or taken over."""

    def __init__(self, slug: str, claimant: uuid.UUID) -> None:
        super().__init__(
            f"tenant {slug!r} is managed by another Tenant object (uid {claimant}); this one "
            "is not reconciled, and deleting it leaves that tenant alone",
            claimant=str(claimant),
        )
        self.claimant = claimant


@dataclass(frozen=True)
class TenantRowChanges:
    """What ensure_tenant() changed."""

    created: bool = False
    # A row with this slug-derived id that wasn't marked as managed yet.
    marked_managed: bool = False
    # The row had no Tenant object managing it and now has the claimant.
    claimed: bool = False
    # Columns that differed from the manifest and were set back to it.
    updated: tuple[str, ...] = ()


async def ensure_tenant(
    db: Database,
    tenant_id: uuid.UUID,
    tenant: ManagedTenant,
    *,
    claimant: uuid.UUID | None = None,
) -> TenantRowChanges:
    """Create the tenant's row, or bring its name, suspension and limits back to `tenant`.
    `claimant` is the Tenant object asking (None: a local apply, which claims nothing): an
    unclaimed row becomes its; a row another object claims raises SlugClaimed. Raises
    SlugConflict when the id or the slug is another tenant's."""
    try:
        return await _ensure_tenant(db, tenant_id, tenant, claimant)
    except IntegrityError as exc:
        if TENANTS_PRIMARY_KEY not in str(exc.orig):
            raise
    # Another claimant inserted this id between our read and our insert: read it again,
    # now that it exists (a row it claimed raises SlugClaimed).
    return await _ensure_tenant(db, tenant_id, tenant, claimant)


async def _ensure_tenant(
    db: Database, tenant_id: uuid.UUID, tenant: ManagedTenant, claimant: uuid.UUID | None
) -> TenantRowChanges:
    wanted = {
        "name": tenant.name,
        "suspended": tenant.suspended,
        "rate_limits": tenant.rate_limits,
        "max_upload_bytes": tenant.max_upload_bytes,
        "storage_quota_bytes": tenant.storage_quota_bytes,
    }
    marked_managed = claimed = False
    try:
        async with db.transaction(tenant_id) as session:
            row = await session.get(Tenant, tenant_id, with_for_update=True)
            if row is None:
                session.add(
                    Tenant(
                        id=tenant_id,
                        slug=tenant.slug,
                        managed=True,
                        manifest_uid=claimant,
                        **wanted,
                    )
                )
                await session.flush()
                return TenantRowChanges(created=True, claimed=claimant is not None)
            if row.slug != tenant.slug:
                raise SlugConflict(f"tenant {tenant_id} has slug {row.slug!r}, not ours")
            if claimant is not None and row.manifest_uid not in (None, claimant):
                raise SlugClaimed(tenant.slug, row.manifest_uid)
            if claimant is not None and row.manifest_uid is None:
                row.manifest_uid = claimant
                claimed = True
            if not row.managed:
                # Only the seed and earlier operators made rows with a slug-derived id
                # (registration's ids are random, uuid4): this row is ours to manage.
                row.managed = True
                await session.flush()
                marked_managed = True
            updated = tuple(key for key, value in wanted.items() if getattr(row, key) != value)
            for key in updated:
                setattr(row, key, wanted[key])
    except IntegrityError as exc:
        if "uq_tenants_slug_managed" not in str(exc.orig):
            raise
        raise SlugConflict(
            f"another managed tenant already has slug {tenant.slug!r} (under another id); "
            "not taken over"
        ) from exc
    return TenantRowChanges(marked_managed=marked_managed, claimed=claimed, updated=updated)


class AdminInvitationState(StrEnum):
    MEMBER = "member"  # the address already belongs to a member: nothing to send
    OPEN = "open"  # an open invitation whose mail went out: left alone
    CREATED = "created"  # a new invitation, mailed now
    RENEWED = "renewed"  # a new token and expiry for an existing invitation, mailed now


@dataclass(frozen=True)
class AdminInvitation:
    """What invite_first_admin() found or did."""

    state: AdminInvitationState
    # When the open invitation expires (all states but MEMBER).
    expires_at: datetime | None = None
    # RENEWED: the invitation had expired (rather than its mail not having gone out).
    was_expired: bool = False
    # CREATED and RENEWED: whether the SMTP server took the mail.
    email_sent: bool = False


async def invite_first_admin(
    db: Database,
    tenant_id: uuid.UUID,
    email: str,
    *,
    last_mail_sent: bool,
    settings: Settings,
) -> AdminInvitation:
    """Invite `email` as the tenant's first ADMIN, by mail only: the one-time token goes to
    that address, after the commit, and nowhere else (the row keeps its HMAC).

    An open invitation is left alone if it has not expired and `last_mail_sent` (the
    caller's record that SMTP took its mail); otherwise it gets a new token and expiry, as
    resend_invitation does, so a token that may have been seen elsewhere, or that expired,
    stops working."""
    email = email.lower()
    token = OpaqueToken.new(tenant_id)
    now = datetime.now(UTC)
    expires_at = now + timedelta(seconds=settings.invitation_ttl_seconds)
    async with db.transaction(tenant_id) as session:
        member = await session.scalar(
            select(TenantMembership.id)
            .join(User, User.id == TenantMembership.user_id)
            .where(User.email == email)
        )
        if member is not None:
            return AdminInvitation(AdminInvitationState.MEMBER)
        invitation = await session.scalar(
            select(Invitation)
            .where(
                Invitation.email == email,
                Invitation.role == Role.ADMIN,
                Invitation.accepted_at.is_(None),
            )
            .order_by(Invitation.created_at.desc())
            .limit(1)
            .with_for_update()
        )
        was_expired = False
        if invitation is None:
            session.add(
                Invitation(
                    tenant_id=tenant_id,
                    email=email,
                    role=Role.ADMIN,
                    token_hash=token.digest(settings),
                    expires_at=expires_at,
                )
            )
            state = AdminInvitationState.CREATED
        elif invitation.expires_at > now and last_mail_sent:
            return AdminInvitation(AdminInvitationState.OPEN, invitation.expires_at)
        else:
            was_expired = invitation.expires_at <= now
            invitation.token_hash = token.digest(settings)
            invitation.expires_at = expires_at
            state = AdminInvitationState.RENEWED
        tenant_name = await session.scalar(select(Tenant.name).where(Tenant.id == tenant_id))
    # After the commit, as invite() does: a mailed token always has its row.
    mail = emails.invitation(settings, email, tenant_name or "", Role.ADMIN, token.value)
    sent = await deliver(settings, mail)
    return AdminInvitation(state, expires_at, was_expired=was_expired, email_sent=sent)


@dataclass(frozen=True)
class TenantUsage:
    """What the tenant holds, and the storage limits in effect (its own or the platform's)."""

    members: int
    # Bytes its objects in S3 take (originals and renditions), and bytes uploads under way
    # have reserved: the totals app/media/quota.py keeps in tenant_storage.
    storage_used_bytes: int
    storage_reserved_bytes: int
    storage_quota_bytes: int
    max_upload_bytes: int


async def usage(db: Database, tenant_id: uuid.UUID, settings: Settings) -> TenantUsage:
    """How many members the tenant has, its storage totals, and its effective limits."""
    async with db.transaction(tenant_id) as session:
        members = await session.scalar(select(func.count()).select_from(TenantMembership))
        storage = await quota.usage(session, tenant_id)
        tenant = await session.get(Tenant, tenant_id)
    limits = policy_from_row(settings, tenant)
    return TenantUsage(
        members=int(members or 0),
        storage_used_bytes=storage.used_bytes,
        storage_reserved_bytes=storage.reserved_bytes,
        storage_quota_bytes=limits.storage_quota_bytes,
        max_upload_bytes=limits.max_upload_bytes,
    )


@dataclass(frozen=True)
class TenantClaim:
    """Which Tenant object (its metadata.uid) manages a tenant; None: none does."""

    manifest_uid: uuid.UUID | None


async def tenant_claim(db: Database, tenant_id: uuid.UUID) -> TenantClaim | None:
    """The tenant's claim; None when there is no such tenant."""
    async with db.transaction(tenant_id) as session:
        row = (
            await session.execute(select(Tenant.manifest_uid).where(Tenant.id == tenant_id))
        ).first()
    return None if row is None else TenantClaim(row.manifest_uid)


def _claimed_by_another(tenant: Tenant, claimant: uuid.UUID | None) -> bool:
    return claimant is not None and tenant.manifest_uid not in (None, claimant)


async def suspend_tenant(
    db: Database, tenant_id: uuid.UUID, *, claimant: uuid.UUID | None = None
) -> bool:
    """Suspend the tenant, keeping its data, and release `claimant`'s claim on it (a Tenant
    object re-created with its slug takes it over); whether it was suspended now. A tenant
    another Tenant object claims is left alone."""
    async with db.transaction(tenant_id) as session:
        tenant = await session.get(Tenant, tenant_id, with_for_update=True)
        if tenant is None or _claimed_by_another(tenant, claimant):
            return False
        tenant.manifest_uid = None
        if tenant.suspended:
            return False
        tenant.suspended = True
    return True


async def delete_tenant(
    db: Database, tenant_id: uuid.UUID, *, claimant: uuid.UUID | None = None
) -> bool:
    """Delete the tenant and, by cascade, every row of every tenant table; whether it was
    deleted. A tenant another Tenant object than `claimant` manages is left alone. Its S3
    objects and database role are the operator's to remove."""
    async with db.transaction(tenant_id) as session:
        tenant = await session.get(Tenant, tenant_id, with_for_update=True)
        if tenant is None or _claimed_by_another(tenant, claimant):
            return False
        await session.delete(tenant)
    return True
