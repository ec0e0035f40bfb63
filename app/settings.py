"""All configuration, read from the environment (and an optional .env file)."""

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    port: int = 3000
    metrics_port: int = 9100

    # The runtime role: NOSUPERUSER, NOBYPASSRLS, owns nothing. Used by the API and workers.
    database_url: str = "postgresql+asyncpg://courtside_app:courtside_app@localhost:5432/courtside"
    # The owner role: runs migrations, and (with CREATEROLE) the operator's role management.
    migration_database_url: str = (
        "postgresql+asyncpg://courtside_owner:courtside_owner@localhost:5432/courtside"
    )
    db_runtime_role: str = "courtside_app"
    # The outbox relay's role: sees outbox_events of every tenant and nothing else.
    relay_database_url: str = (
        "postgresql+asyncpg://courtside_relay:courtside_relay@localhost:5432/courtside"
    )
    db_relay_role: str = "courtside_relay"
    db_pool_size: int = 40
    db_max_overflow: int = 10
    # Raw asyncpg pool for hot read paths (the feed); size it to the expected concurrency.
    db_read_pool_size: int = 32
    db_statement_timeout_ms: int = 15_000

    redis_url: str = "redis://localhost:6379/0"

    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ENDPOINT_URL", "AWS_ENDPOINT")
    )
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    s3_bucket: str = "courtside-media"
    sqs_notifications_queue_url: str = ""
    sqs_media_queue_url: str = ""

    jwt_access_secret: SecretStr = SecretStr("dev-access-secret-change-me-0123456789abcdef")
    # Used as an HMAC pepper for stored refresh-token and invitation hashes.
    jwt_refresh_secret: SecretStr = SecretStr("dev-refresh-secret-change-me-0123456789abcdef")
    jwt_issuer: str = "courtside"
    jwt_audience: str = "courtside-api"
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    invitation_ttl_seconds: int = 7 * 24 * 3600

    # Rate limits (requests per window, plus a one-second burst allowance).
    rate_limit_enabled: bool = True
    rate_limit_window_seconds: int = 60
    rate_limit_max_per_ip: int = 600
    rate_limit_max_per_user: int = 300
    rate_limit_max_per_tenant: int = 3000
    rate_limit_burst: int = 50
    # Redis down: serve anyway (True) or refuse with 503 (False). See README "Rate limiting".
    rate_limit_fail_open: bool = True
    # How often each replica shares what it admitted through Redis (app/ratelimit.py).
    rate_limit_sync_interval_ms: int = Field(50, ge=5, le=5000)
    # How long a tenant's limits/suspension read from Redis are cached in-process.
    tenant_policy_cache_seconds: float = 2.0

    # Failed-login throttling.
    login_max_failures_per_account_ip: int = 5
    login_max_failures_per_ip: int = 50
    login_max_failures_per_account: int = 20
    login_failure_window_seconds: int = 900
    login_account_lock_seconds: int = 60

    max_upload_size_mb: int = 500
    max_tenant_storage_gb: int = 50

    # Event pipeline.
    outbox_batch_size: int = 100
    outbox_max_attempts: int = 8
    outbox_poll_seconds: float = 1.0
    outbox_retention_hours: int = 72
    # Event type -> queue names ("notifications", "media"); unrouted events are marked sent.
    event_routes: dict[str, list[str]] = {
        "post.created": ["notifications"],
        "comment.created": ["notifications"],
        "session.scheduled": ["notifications"],
        "session.cancelled": ["notifications"],
        "media.process": ["media"],
    }
    sqs_wait_seconds: int = 20
    sqs_visibility_timeout: int = 60
    worker_concurrency: int = 10
    worker_shutdown_grace_seconds: float = 25.0
    scheduler_tick_seconds: float = 30.0

    # Tenant operator.
    operator_namespace: str = "courtside"  # where tenant credential Secrets are written
    operator_peering: str = ""  # empty: standalone (one replica)
    operator_priority: int = 0  # with peering: the highest priority works
    operator_health_port: int = 8080  # kopf's liveness endpoint (/healthz)
    operator_resync_seconds: float = 60.0  # drift check interval
    operator_kube_url: str | None = None  # API server URL override (tests, kmock)
    operator_state_dir: str = ".courtside/tenants"  # `courtside tenants` without a cluster

    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_from: str = "Courtside <no-reply@courtside.local>"

    # Trust X-Forwarded-For from these proxies (the ingress); empty trusts none.
    forwarded_allow_ips: str = ""


@lru_cache
def get_settings() -> Settings:
    return Settings()
