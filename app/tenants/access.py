"""A caller's role and session as the database has them now, cached for a moment.

An access token lives for minutes; a member can be demoted or removed, or sign out, sooner.
So the role is never taken from the token: `current_caller` asks this cache on every
request, and each process keeps what it read for MEMBERSHIP_CACHE_SECONDS.

A session is the refresh-token family a token was issued with (its `sid`); it is live
while no token of the family is revoked (logout, reuse detection, role change, removal
all revoke whole families) and it began after the user's last password reset.

Sessions are read per tenant, in batches: a read takes every session of the tenant that
was asked for meanwhile, plus the recently used ones that are halfway to stale, in one
query on the raw read pool. The database then sees about one small query per active tenant
per period, rather than one per user; the feed's hot path only does dictionary lookups.
"""

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import asyncpg

from app.infra.db import tenant_connection
from app.tenants.models import Role

# (user_id, session_id)
SessionKey = tuple[uuid.UUID, uuid.UUID]

# Every predicate leads with the tenant, as the indexes do: memberships (tenant_id, user_id),
# refresh tokens (tenant_id, family_id). A family counts only with a token of this user in
# it issued after their last password reset (as refresh does: app/auth/service.py), and
# ends as soon as any of its tokens is revoked.
_SESSIONS_SQL = """
SELECT s.user_id, s.session_id, m.role
FROM unnest($2::text[], $3::text[]) AS s(user_id, session_id)
JOIN tenant_memberships m ON m.tenant_id = $1 AND m.user_id = s.user_id::uuid
JOIN users u ON u.id = m.user_id
WHERE EXISTS (
        SELECT 1 FROM refresh_tokens r
        WHERE r.tenant_id = $1 AND r.family_id = s.session_id::uuid
          AND r.user_id = s.user_id::uuid
          AND (u.password_changed_at IS NULL OR r.created_at > u.password_changed_at))
  AND NOT EXISTS (
        SELECT 1 FROM refresh_tokens r
        WHERE r.tenant_id = $1 AND r.family_id = s.session_id::uuid
          AND r.revoked_at IS NOT NULL)
"""


@dataclass(slots=True)
class _Verdict:
    role: Role | None  # None: not a member, or the session has ended
    checked_at: float  # monotonic time the read that produced it began
    used_at: float


@dataclass(slots=True)
class _TenantSessions:
    verdicts: dict[SessionKey, _Verdict] = field(default_factory=dict)
    wanted: set[SessionKey] = field(default_factory=set)
    loading: "asyncio.Task[dict[SessionKey, Role | None] | None] | None" = None
    # Bumped by forget(): a read that began before it must not store what it read.
    generation: int = 0


class MemberSessionCache:
    """The role of a (user, session) in a tenant, or None if it may not act there."""

    def __init__(self, ttl_seconds: float, *, idle_seconds: float = 60.0) -> None:
        self.ttl = ttl_seconds
        self.idle = max(idle_seconds, ttl_seconds)
        # Sessions used this recently are renewed along with their tenant's next read.
        self.active = max(5 * ttl_seconds, 1.0)
        # Set when the process opens its raw pool (app/resources.py).
        self.read_pool: asyncpg.Pool | None = None
        self._tenants: dict[uuid.UUID, _TenantSessions] = {}

    async def role(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, session_id: uuid.UUID
    ) -> Role | None:
        key = (user_id, session_id)
        tenant = self._tenants.get(tenant_id)
        if tenant is not None:
            verdict = tenant.verdicts.get(key)
            if verdict is not None:
                now = time.monotonic()
                if now - verdict.checked_at < self.ttl:
                    verdict.used_at = now
                    return verdict.role
        return await self._read(tenant_id, key)

    def forget(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID, session_id: uuid.UUID | None = None
    ) -> None:
        """Drop what this process knows of a user's sessions (all, or one), so the next
        request reads them again: for changes this process made itself."""
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            return
        tenant.generation += 1
        if session_id is not None:
            tenant.verdicts.pop((user_id, session_id), None)
            return
        for key in [k for k in tenant.verdicts if k[0] == user_id]:
            del tenant.verdicts[key]

    async def _read(self, tenant_id: uuid.UUID, key: SessionKey) -> Role | None:
        tenant = self._tenants.setdefault(tenant_id, _TenantSessions())
        while True:
            tenant.wanted.add(key)
            if tenant.loading is None:
                tenant.loading = asyncio.create_task(self._load(tenant_id, tenant))
                tenant.loading.add_done_callback(_consume_exception)
            # Shielded: a cancelled request must not cancel the read others wait for.
            read = await asyncio.shield(tenant.loading)
            if read is not None and key in read:
                return read[key]
            # The read began before our key was asked for, or a forget() overtook it.

    async def _load(
        self, tenant_id: uuid.UUID, tenant: _TenantSessions
    ) -> dict[SessionKey, Role | None] | None:
        try:
            started = time.monotonic()
            generation = tenant.generation
            keys = set(tenant.wanted)
            tenant.wanted.clear()
            for key, verdict in list(tenant.verdicts.items()):
                if started - verdict.used_at > self.idle:
                    del tenant.verdicts[key]
                elif (
                    started - verdict.checked_at > self.ttl / 2
                    and started - verdict.used_at < self.active
                ):
                    keys.add(key)  # in use and halfway stale: renew it with the others
            roles = await self._query(tenant_id, keys)
            read = {key: roles.get(key) for key in keys}
            if tenant.generation != generation:
                return None
            for key, role in read.items():
                known = tenant.verdicts.get(key)
                if known is None:
                    tenant.verdicts[key] = _Verdict(role, started, started)
                else:
                    known.role, known.checked_at = role, started
            return read
        finally:
            tenant.loading = None

    async def _query(
        self, tenant_id: uuid.UUID, keys: set[SessionKey]
    ) -> dict[SessionKey, Role | None]:
        if self.read_pool is None:
            raise RuntimeError("MemberSessionCache needs the read pool (Resources.open)")
        users = [str(user_id) for user_id, _ in keys]
        sessions = [str(session_id) for _, session_id in keys]
        async with tenant_connection(self.read_pool, tenant_id) as conn:
            rows = await conn.fetch(_SESSIONS_SQL, str(tenant_id), users, sessions)
        return {
            (uuid.UUID(str(r["user_id"])), uuid.UUID(str(r["session_id"]))): Role(r["role"])
            for r in rows
        }


def _consume_exception(task: "asyncio.Task[object]") -> None:
    # Waiters see the error; this keeps asyncio from logging it again when none are left.
    if not task.cancelled():
        task.exception()
