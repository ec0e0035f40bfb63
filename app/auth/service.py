"""Registration, login, refresh-token rotation, logout and invitation acceptance."""

import asyncio
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin import service as audit
from app.auth.models import RefreshToken, User
from app.auth.schemas import AcceptInvitationIn, LoginIn, RegisterIn
from app.auth.security import (
    AccessClaims,
    OpaqueToken,
    hash_password,
    issue_access_token,
    verify_password,
)
from app.auth.throttle import LoginThrottle
from app.db import Database
from app.errors import Conflict, Gone, NotFound, TenantSuspended, Unauthorized
from app.request_meta import RequestMeta
from app.settings import Settings
from app.tenants.models import Invitation, Role, Tenant, TenantMembership

log = structlog.get_logger(__name__)
_FIND_USER = text("SELECT id, password_hash, default_tenant_id FROM auth_find_user(:email)")
BAD_CREDENTIALS = "Invalid email or password."


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    role: str


@dataclass(frozen=True)
class KnownUser:
    id: uuid.UUID
    password_hash: str
    default_tenant_id: uuid.UUID | None


def _now() -> datetime:
    return datetime.now(UTC)


async def find_user_by_email(session: AsyncSession, email: str) -> KnownUser | None:
    """Look a user up by email across tenants (a narrow SECURITY DEFINER function)."""
    row = (await session.execute(_FIND_USER, {"email": email.lower()})).first()
    return KnownUser(row.id, row.password_hash, row.default_tenant_id) if row else None


def _issue_tokens(
    session: AsyncSession,
    settings: Settings,
    *,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    role: str,
    family_id: uuid.UUID | None = None,
) -> TokenPair:
    refresh = OpaqueToken.new(tenant_id)
    session.add(
        RefreshToken(
            tenant_id=tenant_id,
            user_id=user_id,
            family_id=family_id or uuid.uuid4(),
            token_hash=refresh.digest(settings),
            expires_at=_now() + timedelta(seconds=settings.refresh_token_ttl_seconds),
        )
    )
    access = issue_access_token(settings, AccessClaims(user_id, tenant_id, role))
    return TokenPair(
        access, refresh.value, settings.access_token_ttl_seconds, tenant_id, user_id, role
    )


def _slugify(name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50] or "tenant"
    return f"{base}-{secrets.token_hex(3)}"


async def register(
    db: Database, settings: Settings, data: RegisterIn, meta: RequestMeta
) -> TokenPair:
    """Create a tenant and its first ADMIN, and sign them in."""
    tenant_id, user_id = uuid.uuid4(), uuid.uuid4()
    password_hash = await asyncio.to_thread(hash_password, data.password)
    email = data.email.lower()
    try:
        async with db.transaction(tenant_id, user_id) as session:
            if await find_user_by_email(session, email):
                raise Conflict("An account with this email already exists; sign in instead.")
            session.add(
                Tenant(
                    id=tenant_id,
                    slug=data.tenant_slug or _slugify(data.tenant_name),
                    name=data.tenant_name,
                )
            )
            await session.flush()
            session.add(
                User(
                    id=user_id,
                    email=email,
                    name=data.name,
                    password_hash=password_hash,
                    default_tenant_id=tenant_id,
                )
            )
            await session.flush()
            session.add(TenantMembership(tenant_id=tenant_id, user_id=user_id, role=Role.ADMIN))
            audit.record(
                session,
                tenant_id=tenant_id,
                action="tenant.registered",
                meta=meta,
                actor_user_id=user_id,
                target_type="tenant",
                target_id=tenant_id,
            )
            return _issue_tokens(
                session, settings, user_id=user_id, tenant_id=tenant_id, role=Role.ADMIN
            )
    except IntegrityError as exc:
        raise Conflict("That email or organisation slug is already taken.") from exc


async def login(
    db: Database, settings: Settings, throttle: LoginThrottle, data: LoginIn, meta: RequestMeta
) -> TokenPair:
    email = data.email.lower()
    await throttle.check(email, meta.ip)
    async with db.transaction() as session:
        user = await find_user_by_email(session, email)
    password_ok = await asyncio.to_thread(
        verify_password, user.password_hash if user else None, data.password
    )
    tenant_id = data.tenant_id or (user.default_tenant_id if user else None)
    if user is not None and password_ok and tenant_id is not None:
        async with db.transaction(tenant_id, user.id) as session:
            membership = await session.scalar(
                select(TenantMembership).where(TenantMembership.user_id == user.id)
            )
            tenant = await session.get(Tenant, tenant_id)
            if membership is not None and tenant is not None:
                if tenant.suspended:
                    raise TenantSuspended("This organisation's account is suspended.")
                pair = _issue_tokens(
                    session, settings, user_id=user.id, tenant_id=tenant_id, role=membership.role
                )
                await throttle.record_success(email, meta.ip)
                return pair
    await throttle.record_failure(email, meta.ip)
    log.info("login_failed", known_user=user is not None, ip=meta.ip)
    if user is not None and user.default_tenant_id is not None:
        async with db.transaction(user.default_tenant_id, user.id) as session:
            audit.record(
                session,
                tenant_id=user.default_tenant_id,
                action="auth.login_failed",
                meta=meta,
                actor_user_id=user.id,
                target_type="user",
                target_id=user.id,
                details={"reason": "bad_password" if not password_ok else "no_membership"},
            )
    raise Unauthorized(BAD_CREDENTIALS)


async def refresh(db: Database, settings: Settings, raw_token: str, meta: RequestMeta) -> TokenPair:
    """Rotate a refresh token. Presenting a token that was already rotated (or revoked)
    revokes its whole family: someone else may hold a copy (RFC 9700 §4.14.2)."""
    token = OpaqueToken.parse(raw_token)
    now = _now()
    async with db.transaction(token.tenant_id) as session:
        row = await session.scalar(
            select(RefreshToken)
            .where(RefreshToken.token_hash == token.digest(settings))
            .with_for_update()
        )
        if row is None:
            raise Unauthorized("The refresh token is invalid.")
        if row.used_at is None and row.revoked_at is None and row.expires_at > now:
            membership = await session.scalar(
                select(TenantMembership).where(TenantMembership.user_id == row.user_id)
            )
            tenant = await session.get(Tenant, token.tenant_id)
            if membership is not None and tenant is not None and not tenant.suspended:
                row.used_at = now
                return _issue_tokens(
                    session,
                    settings,
                    user_id=row.user_id,
                    tenant_id=token.tenant_id,
                    role=membership.role,
                    family_id=row.family_id,
                )
        if row.used_at is not None:
            # A rotated token came back: whoever holds the family may be an attacker.
            await _revoke_family(session, row.family_id, now)
            audit.record(
                session,
                tenant_id=token.tenant_id,
                action="auth.refresh_token_reuse",
                meta=meta,
                actor_user_id=row.user_id,
                target_type="token_family",
                target_id=row.family_id,
            )
    # Outside the transaction, so the revocation above commits.
    raise Unauthorized("The refresh token is no longer valid; sign in again.")


async def _revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def logout(db: Database, settings: Settings, raw_token: str) -> None:
    """Revoke the token's family. Unknown tokens are ignored (nothing to reveal)."""
    try:
        token = OpaqueToken.parse(raw_token)
    except Unauthorized:
        return
    async with db.transaction(token.tenant_id) as session:
        row = await session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == token.digest(settings))
        )
        if row is not None:
            await _revoke_family(session, row.family_id, _now())


async def accept_invitation(
    db: Database, settings: Settings, data: AcceptInvitationIn, meta: RequestMeta
) -> TokenPair:
    """Join the inviting tenant: a new account, or an existing one proven by its password."""
    token = OpaqueToken.parse(data.token)
    digest = token.digest(settings)
    async with db.transaction(token.tenant_id) as session:
        invitation = await _open_invitation(session, digest)
        existing = await find_user_by_email(session, invitation.email)
    if existing is not None:
        if not await asyncio.to_thread(verify_password, existing.password_hash, data.password):
            raise Unauthorized("This email already has an account; use its password.")
        user_id, password_hash = existing.id, None
    else:
        user_id = uuid.uuid4()
        password_hash = await asyncio.to_thread(hash_password, data.password)
    async with db.transaction(token.tenant_id, user_id) as session:
        invitation = await _open_invitation(session, digest)
        if password_hash is not None:
            session.add(
                User(
                    id=user_id,
                    email=invitation.email,
                    name=data.name or invitation.email.split("@")[0],
                    password_hash=password_hash,
                    default_tenant_id=token.tenant_id,
                )
            )
            await session.flush()
        elif await session.scalar(
            select(TenantMembership.id).where(TenantMembership.user_id == user_id)
        ):
            raise Conflict("You are already a member of this organisation.")
        session.add(
            TenantMembership(tenant_id=token.tenant_id, user_id=user_id, role=invitation.role)
        )
        invitation.accepted_at = _now()
        audit.record(
            session,
            tenant_id=token.tenant_id,
            action="invitation.accepted",
            meta=meta,
            actor_user_id=user_id,
            target_type="invitation",
            target_id=invitation.id,
            details={"role": invitation.role},
        )
        return _issue_tokens(
            session, settings, user_id=user_id, tenant_id=token.tenant_id, role=invitation.role
        )


async def _open_invitation(session: AsyncSession, digest: str) -> Invitation:
    invitation = await session.scalar(
        select(Invitation).where(Invitation.token_hash == digest).with_for_update()
    )
    if invitation is None:
        raise NotFound("Invitation not found.")
    if invitation.accepted_at is not None:
        raise Gone("This invitation has already been used.")
    if invitation.expires_at <= _now():
        raise Gone("This invitation has expired.")
    return invitation
