"""Password hashing (Argon2id) and token primitives (JWT access, opaque refresh)."""

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

from app.infra.errors import Unauthorized
from app.infra.settings import Settings

# OWASP Password Storage Cheat Sheet: Argon2id, m=19 MiB, t=2, p=1 (the minimum it lists).
PASSWORD_HASHER = PasswordHasher(
    time_cost=2,
    memory_cost=19 * 1024,
    parallelism=1,
    hash_len=RFC_9106_LOW_MEMORY.hash_len,
    salt_len=RFC_9106_LOW_MEMORY.salt_len,
)
JWT_ALGORITHM = "HS256"
# Verifying against this keeps an unknown email as slow as a wrong password.
_DUMMY_HASH = PASSWORD_HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return PASSWORD_HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        PASSWORD_HASHER.verify(password_hash or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return password_hash is not None


@dataclass(frozen=True)
class AccessClaims:
    """What the API takes from an access token: who, in which tenant, from which sign-in.

    No role: a token outlives role changes, so the caller's role is read from the database
    on each request (app/tenants/access.py). `session_id` is the refresh-token family the
    token was issued with; revoking the family (logout, removal, role change) ends it.
    """

    user_id: uuid.UUID
    tenant_id: uuid.UUID
    session_id: uuid.UUID


def issue_access_token(settings: Settings, claims: AccessClaims, *, role: str) -> str:
    """`role` goes into the token for clients to display; the API never trusts it."""
    now = datetime.now(UTC)
    payload = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(claims.user_id),
        "tenant": str(claims.tenant_id),
        "sid": str(claims.session_id),
        "role": role,
        "iat": now,
        "exp": now + timedelta(seconds=settings.access_token_ttl_seconds),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(payload, settings.jwt_access_secret.get_secret_value(), JWT_ALGORITHM)


class AccessTokenDecoder:
    """Verifies access tokens, remembering ones it has verified until they expire.

    A client sends the same token for its whole lifetime (minutes); re-verifying the HMAC
    and re-parsing the JSON on every request was a large share of the feed's cost. Only
    identical token strings hit the cache, and expiry is re-checked on every hit.
    """

    def __init__(self, settings: Settings, max_entries: int = 50_000) -> None:
        self.settings = settings
        self.max_entries = max_entries
        self._verified: dict[str, tuple[float, AccessClaims]] = {}

    def decode(self, token: str) -> AccessClaims:
        now = time.time()
        hit = self._verified.get(token)
        if hit is not None:
            if hit[0] > now:
                return hit[1]
            del self._verified[token]
        claims, expires_at = _decode(self.settings, token)
        if len(self._verified) >= self.max_entries:
            self._verified.clear()  # crude but bounded; refills from live traffic
        self._verified[token] = (expires_at, claims)
        return claims


def _decode(settings: Settings, token: str) -> tuple[AccessClaims, float]:
    try:
        payload = jwt.decode(
            token,
            settings.jwt_access_secret.get_secret_value(),
            algorithms=[JWT_ALGORITHM],  # pinned: never trust the token's own "alg"
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "tenant", "sid"]},
        )
        claims = AccessClaims(
            uuid.UUID(payload["sub"]), uuid.UUID(payload["tenant"]), uuid.UUID(payload["sid"])
        )
        return claims, float(payload["exp"])
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError) as exc:
        # AttributeError: uuid.UUID() given a number or a list instead of a string.
        raise Unauthorized("The access token is invalid or expired.") from exc


@dataclass(frozen=True)
class OpaqueToken:
    """A secret handed to a client once: `<tenant uuid hex>.<random>`; only its HMAC is stored.

    The tenant prefix tells the server which tenant's rows to look in (RLS needs it before
    any lookup); forging it only moves the lookup to a tenant where the hash won't match.
    """

    tenant_id: uuid.UUID
    value: str

    @classmethod
    def new(cls, tenant_id: uuid.UUID) -> "OpaqueToken":
        return cls(tenant_id, f"{tenant_id.hex}.{secrets.token_urlsafe(32)}")

    @classmethod
    def parse(cls, value: str) -> "OpaqueToken":
        prefix, _, secret = value.partition(".")
        try:
            tenant_id = uuid.UUID(hex=prefix)
        except ValueError as exc:
            raise Unauthorized("The token is invalid.") from exc
        if len(secret) < 32:
            raise Unauthorized("The token is invalid.")
        return cls(tenant_id, value)

    def digest(self, settings: Settings) -> str:
        key = settings.jwt_refresh_secret.get_secret_value().encode()
        return hmac.new(key, self.value.encode(), hashlib.sha256).hexdigest()
