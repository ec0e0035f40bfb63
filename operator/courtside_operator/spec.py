"""The Tenant manifest's spec, parsed into a typed model (after CRD validation)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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
        """The tenant's PostgreSQL role (a DNS label fits in 63 bytes with the prefix)."""
        return "tenant_" + self.slug.replace("-", "_")[:56]

    @property
    def secret_name(self) -> str:
        return f"tenant-{self.slug}-db"[:253]
