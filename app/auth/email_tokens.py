"""Signed, expiring tokens sent by mail: they prove whoever holds one reads that mailbox.

Each purpose signs with its own key, HMAC(JWT_REFRESH_SECRET, purpose), and the purpose is
also the token's audience, so a token for one purpose is never accepted for another (and
an access token, signed with another secret, is accepted by neither). Nothing is stored:

- a sign-up token carries what the form said; it is spent when the user row exists;
- a password-reset token carries a fingerprint of the password hash it was issued for, so
  it stops working once the password changes (single use) or when a newer reset happened.
"""

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from app.infra.errors import Unauthorized
from app.infra.settings import Settings

_ALGORITHM = "HS256"
SIGN_UP = "courtside:sign-up"
PASSWORD_RESET = "courtside:password-reset"  # noqa: S105 - a purpose, not a secret


def _key(settings: Settings, purpose: str) -> bytes:
    secret = settings.jwt_refresh_secret.get_secret_value().encode()
    return hmac.new(secret, f"email-token:{purpose}".encode(), hashlib.sha256).digest()


def _sign(settings: Settings, purpose: str, ttl_seconds: int, claims: dict[str, Any]) -> str:
    now = datetime.now(UTC)
    payload = {
        **claims,
        "iss": settings.jwt_issuer,
        "aud": purpose,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_seconds),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(payload, _key(settings, purpose), _ALGORITHM)


def _verify(settings: Settings, purpose: str, token: str, required: list[str]) -> dict[str, Any]:
    try:
        return jwt.decode(
            token,
            _key(settings, purpose),
            algorithms=[_ALGORITHM],
            audience=purpose,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "iss", "aud", *required]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("This link has expired; ask for a new one.") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("This link is not valid.") from exc


@dataclass(frozen=True)
class SignUp:
    """A registration form, waiting for its email address to be proven."""

    email: str
    name: str
    tenant_name: str
    tenant_slug: str | None


def sign_up_token(settings: Settings, sign_up: SignUp) -> str:
    return _sign(
        settings,
        SIGN_UP,
        settings.email_verification_ttl_seconds,
        {
            "sub": sign_up.email,
            "name": sign_up.name,
            "tenant_name": sign_up.tenant_name,
            "tenant_slug": sign_up.tenant_slug,
        },
    )


def read_sign_up_token(settings: Settings, token: str) -> SignUp:
    claims = _verify(settings, SIGN_UP, token, ["sub", "name", "tenant_name"])
    try:
        return SignUp(
            str(claims["sub"]),
            str(claims["name"]),
            str(claims["tenant_name"]),
            str(claims["tenant_slug"]) if claims.get("tenant_slug") else None,
        )
    except (KeyError, TypeError) as exc:
        raise Unauthorized("This link is not valid.") from exc


def _fingerprint(settings: Settings, password_hash: str) -> str:
    key = _key(settings, "password-fingerprint")
    return hmac.new(key, password_hash.encode(), hashlib.sha256).hexdigest()[:32]


def password_reset_token(settings: Settings, user_id: uuid.UUID, password_hash: str) -> str:
    return _sign(
        settings,
        PASSWORD_RESET,
        settings.password_reset_ttl_seconds,
        {"sub": str(user_id), "pwd": _fingerprint(settings, password_hash)},
    )


@dataclass(frozen=True)
class PasswordReset:
    user_id: uuid.UUID
    fingerprint: str

    def matches(self, settings: Settings, password_hash: str) -> bool:
        """Whether the password is still the one the token was issued for."""
        return hmac.compare_digest(self.fingerprint, _fingerprint(settings, password_hash))


def read_password_reset_token(settings: Settings, token: str) -> PasswordReset:
    claims = _verify(settings, PASSWORD_RESET, token, ["sub", "pwd"])
    try:
        return PasswordReset(uuid.UUID(str(claims["sub"])), str(claims["pwd"]))
    except ValueError as exc:
        raise Unauthorized("This link is not valid.") from exc
