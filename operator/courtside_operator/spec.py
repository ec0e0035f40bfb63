"""The Tenant manifest's spec, parsed into a typed model (after CRD validation)."""

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ROLE_PREFIX = "tenant_"
MAX_ROLE_NAME = 63  # bytes (NAMEDATALEN - 1); slugs are ASCII
ROLE_HASH_CHARS = 12


class _Spec(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class Limit(_Spec):
    requests: int
    window_seconds: int = Field(60, alias="windowSeconds")
    burst: int = 0

    def as_policy(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "windowSeconds": self.window_seconds,
            "burst": self.burst,
        }


class RateLimits(_Spec):
    per_ip: Limit | None = Field(None, alias="perIp")
    per_user: Limit | None = Field(None, alias="perUser")
    per_tenant: Limit | None = Field(None, alias="perTenant")

    def as_policy(self) -> dict[str, Any] | None:
        """The JSON the API reads from tenants.rate_limits (None: platform defaults)."""
        policy = {
            key: limit.as_policy()
            for key, limit in (
                ("perIp", self.per_ip),
                ("perUser", self.per_user),
                ("perTenant", self.per_tenant),
            )
            if limit is not None
        }
        return policy or None


class Storage(_Spec):
    max_upload_bytes: int | None = Field(None, alias="maxUploadBytes")
    quota_bytes: int | None = Field(None, alias="quotaBytes")


class Database(_Spec):
    connection_limit: int = Field(10, alias="connectionLimit")


class TenantSpec(_Spec):
    slug: str
    display_name: str = Field(alias="displayName")
    admin_email: str = Field(alias="adminEmail")
    storage: Storage = Storage()
    rate_limits: RateLimits = Field(RateLimits(), alias="rateLimits")
    database: Database = Database()
    suspended: bool = False
    deletion_policy: Literal["Retain", "Delete"] = Field("Retain", alias="deletionPolicy")

    @property
    def role_name(self) -> str:
        """The tenant's PostgreSQL role: `tenant_<slug>`, or where that passes PostgreSQL's
        63 bytes, a prefix of it and a hash of the whole slug, so no two slugs share one."""
        name = ROLE_PREFIX + self.slug.replace("-", "_")  # a slug has no "_": still unique
        if len(name) <= MAX_ROLE_NAME:
            return name
        digest = hashlib.sha256(self.slug.encode()).hexdigest()[:ROLE_HASH_CHARS]
        return f"{name[: MAX_ROLE_NAME - ROLE_HASH_CHARS - 1]}_{digest}"

    @property
    def secret_name(self) -> str:
        return f"tenant-{self.slug}-db"[:253]
