"""A tenant's effective limits and state, as the API enforces them.

The Tenant operator writes the tenant row (suspended, rate_limits, storage limits); each
API process caches what it read for a couple of seconds, so a change takes effect within
TENANT_POLICY_CACHE_SECONDS without a restart.
"""

import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from sqlalchemy import select

from app.infra.db import Database, tenant_connection
from app.infra.ratelimit import Limit
from app.infra.settings import Settings
from app.tenants.models import Tenant


@dataclass(frozen=True)
class TenantPolicy:
    exists: bool
    suspended: bool
    per_ip: Limit
    per_user: Limit
    per_tenant: Limit
    max_upload_bytes: int
    storage_quota_bytes: int


def _limit(override: dict[str, Any] | None, requests: int, window: int, burst: int) -> Limit:
    if not override:
        return Limit(requests, window, burst)
    return Limit(
        int(override.get("requests", requests)),
        int(override.get("windowSeconds", window)),
        int(override.get("burst", burst)),
    )


def policy_from_row(settings: Settings, row: "Tenant | _TenantRow | None") -> TenantPolicy:
    window, burst = settings.rate_limit_window_seconds, settings.rate_limit_burst
    limits = row.rate_limits if row else None
    if isinstance(limits, str):  # JSON text from a raw connection
        limits = orjson.loads(limits)
    limits = limits or {}
    return TenantPolicy(
        exists=row is not None,
        suspended=bool(row and row.suspended),
        per_ip=_limit(limits.get("perIp"), settings.rate_limit_max_per_ip, window, burst),
        per_user=_limit(limits.get("perUser"), settings.rate_limit_max_per_user, window, burst),
        per_tenant=_limit(
            limits.get("perTenant"), settings.rate_limit_max_per_tenant, window, burst
        ),
        max_upload_bytes=(
            row.max_upload_bytes
            if row and row.max_upload_bytes
            else settings.max_upload_size_mb * 1024 * 1024
        ),
        storage_quota_bytes=(
            row.storage_quota_bytes
            if row and row.storage_quota_bytes
            else settings.max_tenant_storage_gb * 1024**3
        ),
    )


_POLICY_SQL = (
    "SELECT suspended, rate_limits, max_upload_bytes, storage_quota_bytes "
    "FROM tenants WHERE id = $1"
)


@dataclass(frozen=True)
class _TenantRow:
    suspended: bool
    rate_limits: Any
    max_upload_bytes: int | None
    storage_quota_bytes: int | None


class TenantPolicyCache:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        # Set once the process has a raw pool: a cache miss then costs one cheap query.
        self.read_pool: asyncpg.Pool | None = None
        self._entries: dict[uuid.UUID, tuple[float, TenantPolicy]] = {}

    async def get(self, tenant_id: uuid.UUID) -> TenantPolicy:
        now = time.monotonic()
        cached = self._entries.get(tenant_id)
        if cached and cached[0] > now:
            return cached[1]
        if self.read_pool is not None:
            async with tenant_connection(self.read_pool, tenant_id) as conn:
                record = await conn.fetchrow(_POLICY_SQL, str(tenant_id))
            row = _TenantRow(**record) if record else None
        else:
            async with self.db.transaction(tenant_id) as session:
                row = await session.scalar(select(Tenant).where(Tenant.id == tenant_id))
        policy = policy_from_row(self.settings, row)
        self._entries[tenant_id] = (now + self.settings.tenant_policy_cache_seconds, policy)
        return policy

    def invalidate(self, tenant_id: uuid.UUID | None = None) -> None:
        if tenant_id is None:
            self._entries.clear()
        else:
            self._entries.pop(tenant_id, None)
