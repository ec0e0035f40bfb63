"""Sign-up, login, password reset, refresh-token rotation, logout and invitation acceptance.

Each public function is one unit of work taking the `Database` first (docs/architecture.md,
"The service contract"). Most act before anyone is signed in, so they open one transaction
per step, each in the tenant it has learnt by then: none to look a user up by email, the
tenant a token names, the tenant a user signs in to. `settings` comes as a keyword.

Nothing here tells a caller whether an address has an account: sign-up and forgotten
password answer the same for every address and say the rest by mail, to whoever reads it;
a failed login does the same work for a known and an unknown address.
"""

import asyncio
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth import email_tokens, emails
from app.auth.caller import Caller
from app.auth.models import RefreshToken, User
from app.auth.schemas import (
    AcceptInvitationIn,
    LoginIn,
    RegisterIn,
    ResetPasswordIn,
    VerifyEmailIn,
)
from app.auth.security import (
    AccessClaims,
    OpaqueToken,
    hash_password,
    issue_access_token,
    verify_password,
)
from app.auth.throttle import LoginThrottle
from app.infra.db import Database
from app.infra.errors import (
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    RateLimited,
    TenantSuspended,
    Unauthorized,
    ValidationFailed,
)
from app.infra.mail import Mail
from app.infra.ratelimit import Bucket, Limit, RateLimiter
from app.infra.request_meta import RequestMeta
from app.infra.settings import Settings
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
    """Look a user up by email across tenants (a narrow SECURITY DEFINER function).

    A step: runs in the caller's transaction, with or without a tenant."""
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
    family_id = family_id or uuid.uuid4()
    session.add(
        RefreshToken(
            tenant_id=tenant_id,
            user_id=user_id,
            family_id=family_id,
            token_hash=refresh.digest(settings),
            expires_at=_now() + timedelta(seconds=settings.refresh_token_ttl_seconds),
        )
    )
    # The family is the sign-in's session: revoking it ends this access token too.
    access = issue_access_token(settings, AccessClaims(user_id, tenant_id, family_id), role=role)
    return TokenPair(
        access, refresh.value, settings.access_token_ttl_seconds, tenant_id, user_id, role
    )


def _slugify(name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50] or "tenant"
    return f"{base}-{secrets.token_hex(3)}"


async def register(db: Database, data: RegisterIn, *, settings: Settings) -> Mail:
    """Start a sign-up: the mail to send, a link that finishes it (verify_email) or, when
    the address already has an account, a note to its owner. Creates nothing and hashes
    nothing, so it costs the same for every address and a squatter gets no identity."""
    email = data.email.lower()
    async with db.transaction() as session:
        existing = await find_user_by_email(session, email)
    if existing is not None:
        return emails.already_registered(settings, email)
    form = email_tokens.SignUp(email, data.name, data.tenant_name, data.tenant_slug)
    return emails.sign_up(
        settings, email, data.tenant_name, email_tokens.sign_up_token(settings, form)
    )


async def verify_email(
    db: Database, data: VerifyEmailIn, meta: RequestMeta, *, settings: Settings
) -> TokenPair:
    """Finish a sign-up with the mailed token: create the tenant and its first ADMIN with
    the password chosen now, and sign them in. The token is spent once the user exists."""
    form = email_tokens.read_sign_up_token(settings, data.token)
    async with db.transaction() as session:
        if await find_user_by_email(session, form.email):
            raise Conflict("This email already has an account; sign in instead.")
    # Argon2 only for a holder of a valid token, i.e. whoever reads that mailbox.
    password_hash = await asyncio.to_thread(hash_password, data.password)
    tenant_id, user_id = uuid.uuid4(), uuid.uuid4()
    try:
        async with db.transaction(tenant_id, user_id) as session:
            session.add(
                Tenant(
                    id=tenant_id,
                    slug=form.tenant_slug or _slugify(form.tenant_name),
                    name=form.tenant_name,
                )
            )
            await session.flush()
            session.add(
                User(
                    id=user_id,
                    email=form.email,
                    name=form.name,
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


async def forgot_password(db: Database, email: str, *, settings: Settings) -> Mail | None:
    """The reset mail to send, or None for an address without an account (the caller
    answers the same either way)."""
    email = email.lower()
    async with db.transaction() as session:
        user = await find_user_by_email(session, email)
    if user is None:
        return None
    token = email_tokens.password_reset_token(settings, user.id, user.password_hash)
    return emails.password_reset(settings, email, token)


async def reset_password(
    db: Database,
    data: ResetPasswordIn,
    meta: RequestMeta,
    *,
    settings: Settings,
    throttle: LoginThrottle,
) -> None:
    """Set a new password with a mailed reset token. The token works once (it is bound to
    the password it was issued for), and every refresh token issued before dies."""
    reset = email_tokens.read_password_reset_token(settings, data.token)
    async with db.transaction(None, reset.user_id) as session:
        user = await session.get(User, reset.user_id)
        if user is None or not reset.matches(settings, user.password_hash):
            raise Gone("This link was already used; ask for a new one.")
    password_hash = await asyncio.to_thread(hash_password, data.password)
    async with db.transaction(None, reset.user_id) as session:
        user = await session.scalar(select(User).where(User.id == reset.user_id).with_for_update())
        if user is None or not reset.matches(settings, user.password_hash):
            raise Gone("This link was already used; ask for a new one.")
        user.password_hash = password_hash
        # The database's clock, the one refresh_tokens.created_at is stamped with.
        user.password_changed_at = func.now()
        email, tenant_id = user.email, user.default_tenant_id
    if tenant_id is not None:
        async with db.transaction(tenant_id, reset.user_id) as session:
            # Sessions in other tenants can no longer refresh (_password_changed_since);
            # here, where the user landed, they end at once, access tokens included.
            await session.execute(
                update(RefreshToken)
                .where(RefreshToken.user_id == reset.user_id, RefreshToken.revoked_at.is_(None))
                .values(revoked_at=func.now())
            )
            audit.record(
                session,
                tenant_id=tenant_id,
                action="auth.password_reset",
                meta=meta,
                actor_user_id=reset.user_id,
                target_type="user",
                target_id=reset.user_id,
            )
    # Proven owner: this address may guess no more, but it is no longer a suspect either.
    await throttle.record_success(email, meta.ip)


async def login(
    db: Database, data: LoginIn, meta: RequestMeta, *, settings: Settings, throttle: LoginThrottle
) -> TokenPair:
    """Sign in with a password: the one place a password is checked, under the throttle."""
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
    # The same work for a known and an unknown address (no audit row: that write, and its
    # time, happened only for known ones). The log line is for operators, not the caller.
    await throttle.record_failure(email, meta.ip)
    log.info(
        "login_failed",
        user_id=str(user.id) if user else None,
        reason="bad_password" if not password_ok else "no_membership",
        ip=meta.ip,
    )
    raise Unauthorized(BAD_CREDENTIALS)


async def refresh(
    db: Database, raw_token: str, meta: RequestMeta, *, settings: Settings
) -> TokenPair:
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
        if (
            row.used_at is None
            and row.revoked_at is None
            and row.expires_at > now
            and not await _password_changed_since(session, row)
            and not await _family_revoked(session, row.family_id)
        ):
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


async def _family_revoked(session: AsyncSession, family_id: uuid.UUID) -> bool:
    # A logout racing this refresh revokes the rows it can see, not the one we insert; so a
    # family with any revoked token is over, as the per-request session check treats it.
    revoked = await session.scalar(
        select(RefreshToken.id)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_not(None))
        .limit(1)
    )
    return revoked is not None


async def _password_changed_since(session: AsyncSession, row: RefreshToken) -> bool:
    # A password reset ends every session from before it, in every tenant, without having
    # to reach each tenant's refresh_tokens rows.
    changed = await session.scalar(select(User.password_changed_at).where(User.id == row.user_id))
    return changed is not None and row.created_at <= changed


async def _revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


@dataclass(frozen=True)
class EndedSession:
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    session_id: uuid.UUID


async def logout(db: Database, raw_token: str, *, settings: Settings) -> EndedSession | None:
    """Revoke the token's family, which ends the access tokens issued with it as well.
    Unknown tokens are ignored (nothing to reveal); returns the session that ended."""
    try:
        token = OpaqueToken.parse(raw_token)
    except Unauthorized:
        return None
    async with db.transaction(token.tenant_id) as session:
        row = await session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == token.digest(settings))
        )
        if row is None:
            return None
        await _revoke_family(session, row.family_id, _now())
        ended = EndedSession(token.tenant_id, row.user_id, row.family_id)
    return ended


async def accept_invitation(
    db: Database,
    caller: Caller | None,
    data: AcceptInvitationIn,
    meta: RequestMeta,
    *,
    settings: Settings,
) -> TokenPair:
    """Join the inviting tenant with the mailed token. An address that already has an
    account joins signed in as that account (`caller`, from any tenant; no password);
    a new one chooses its password here (the mailed token proved the address)."""
    token = OpaqueToken.parse(data.token)
    digest = token.digest(settings)
    async with db.transaction(token.tenant_id) as session:
        invitation = await _open_invitation(session, digest)
        existing = await find_user_by_email(session, invitation.email)
    if caller is not None:
        if data.password is not None:
            raise ValidationFailed("Signed in: accept without a password.")
        if existing is None or existing.id != caller.user_id:
            raise Forbidden("This invitation is for another email address.")
        user_id, password_hash = caller.user_id, None
    elif existing is not None:
        raise Unauthorized("This email already has an account: sign in, then accept.")
    elif data.password is None:
        raise ValidationFailed("Choose a password for your new account.")
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


async def may_send_mail(limiter: RateLimiter, settings: Settings, mail: Mail) -> bool:
    """Whether an ownership mail (sign-up, password reset) may go to its address now: at
    most AUTH_MAILS_PER_ADDRESS_PER_HOUR per address, so nobody can use us to flood one.
    The address is counted by its hash, never stored in Redis as it is."""
    n = max(1, settings.auth_mails_per_address_per_hour)
    recipient = hashlib.sha256(mail.to.encode()).hexdigest()[:32]
    try:
        await limiter.check([Bucket("auth-mail", recipient, Limit(n, 3600, burst=n - 1))])
    except RateLimited:
        log.warning("mail_dropped_over_limit", kind=mail.kind)
        return False
    return True
