"""All configuration, read from the environment (and an optional .env file)."""

import ipaddress
from functools import lru_cache
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Outside development, a secret shorter than this, or one of the public placeholders (the
# defaults below, .env.example, values-dev.yaml all say "change-me"), refuses to start.
MIN_SECRET_BYTES = 32
PUBLIC_SECRET_MARKER = "change-me"  # noqa: S105 - the marker of a non-secret
# The role passwords `make dev` and the test harness use (role name = password).
DEFAULT_DB_PASSWORDS = frozenset({"courtside_app", "courtside_owner", "courtside_relay"})


class Settings(BaseSettings):
    # Errors never echo their input: it holds secrets and database passwords.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    port: int = 3000
    # Prometheus /metrics of the API and the workers: its own port, never the public one.
    metrics_port: int = 9100
    # /docs, /redoc and /openapi.json; unset: served except in production.
    api_docs: bool | None = None

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
    # NOLOGIN group of the per-tenant roles: SELECT on tenant tables, pinned to the tenant.
    db_tenant_reader_role: str = "courtside_tenant_reader"
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
    # How often each replica shares what it admitted through Redis (app/infra/ratelimit.py).
    rate_limit_sync_interval_ms: int = Field(50, ge=5, le=5000)
    # How long a tenant's limits and suspension (its row, app/tenants/policy.py) are cached.
    tenant_policy_cache_seconds: float = 2.0
    # How long a caller's role and session (not revoked) read per request are cached in-process.
    membership_cache_seconds: float = Field(2.0, ge=0, le=10)

    # Failed-login throttling (app/auth/throttle.py).
    login_max_failures_per_account_ip: int = 5  # one address guessing one account
    login_max_failures_per_ip: int = 50  # one address spraying many accounts
    # Account on alert (each address that already failed for it is refused) once it has this
    # many failures from at least login_alert_min_addresses distinct addresses.
    login_max_failures_per_account: int = 20
    login_alert_min_addresses: int = 5
    login_failure_window_seconds: int = 900

    # Mail that proves ownership of an address (signed, expiring tokens; app/auth/email_tokens.py).
    public_url: str = "http://localhost:3000"  # base of the links in mails (the web app)
    email_verification_ttl_seconds: int = 24 * 3600  # sign-up link
    password_reset_ttl_seconds: int = 3600  # password-reset link
    auth_mails_per_address_per_hour: int = 5  # sign-up/reset mails to one address

    # Platform defaults of a tenant's storage limits (a Tenant's spec.storage overrides).
    max_upload_size_mb: int = 500
    max_tenant_storage_gb: int = 50

    # Media uploads (app/media): the client PUTs parts straight to S3 with presigned URLs.
    media_allowed_types: list[str] = [
        "video/mp4",
        "video/quicktime",
        "video/webm",
        "image/jpeg",
        "image/png",
        "image/webp",
    ]
    # Part size of a multipart upload (S3: 5 MiB to 5 GiB, at most 10,000 parts; a file
    # that would need more parts gets bigger ones).
    media_part_size_bytes: int = Field(16 * 1024 * 1024, ge=5 * 1024 * 1024, le=5 * 1024**3)
    media_upload_url_ttl_seconds: int = Field(900, ge=60, le=7 * 24 * 3600)
    # An upload not finalized within this is aborted by the scheduler and its reservation
    # released. The bucket's AbortIncompleteMultipartUpload rule is the backstop.
    media_upload_expiry_hours: float = Field(24, gt=0)
    media_playback_url_ttl_seconds: int = Field(300, ge=10, le=12 * 3600)
    # Processing (app/media/processing.py, the media worker). Originals are downloaded and
    # renditions written here: a bounded volume (the chart's emptyDir with a sizeLimit);
    # empty: the system temp dir.
    media_scratch_dir: str = ""
    # Jobs one media worker runs at once: each takes a transcode's CPU, memory and scratch.
    media_worker_concurrency: int = Field(1, ge=1, le=16)
    # x264 preset of the 720p rendition: speed against size (tests: ultrafast).
    media_video_preset: Literal[
        "ultrafast",
        "superfast",
        "veryfast",
        "faster",
        "fast",
        "medium",
        "slow",
        "slower",
        "veryslow",
    ] = "veryfast"
    media_video_crf: int = Field(23, ge=0, le=51)
    # ffmpeg threads per job; 0: the CPUs the container may use (its cgroup limit).
    media_ffmpeg_threads: int = Field(0, ge=0, le=64)
    # A job's ffmpeg still running after this is stopped and the asset marked failed.
    media_transcode_timeout_seconds: float = Field(3000, gt=0)
    # Originals with more pixels a frame are refused (decoding them takes memory).
    media_max_pixels: int = Field(8192 * 8192, gt=0)
    # Chunk of a streamed download, and part size of a rendition's multipart upload.
    media_transfer_chunk_bytes: int = Field(8 * 1024 * 1024, ge=5 * 1024 * 1024, le=64 * 1024**2)
    # Where clients reach S3 with presigned URLs, if not where the app does (a local
    # cluster: the app reaches moto in-cluster, the laptop through a port-forward).
    s3_public_endpoint_url: str | None = None
    # Browser origins the media bucket's CORS rule admits (PUT of parts, GET of playback),
    # as `courtside aws-init` configures it (production buckets: docs/media-storage.md).
    # Empty: "*" in development and test, otherwise PUBLIC_URL's origin.
    media_cors_origins: list[str] = []

    # Scheduling (app/scheduling, app/bookings).
    # Slots start on this grid of the coach's wall clock (minutes past the hour).
    scheduling_slot_step_minutes: int = Field(15, ge=5, le=240)
    # How long a hold keeps a place while a client checks out.
    booking_hold_minutes: int = Field(10, ge=1, le=120)
    # Athletes may cancel up to this long before a session (a tenant may set its own);
    # coaches, SCHEDULERs and ADMINs always may.
    booking_cancellation_cutoff_minutes: int = Field(24 * 60, ge=0)
    # The widest range one availability query may ask for.
    scheduling_max_range_days: int = Field(62, ge=1, le=366)

    # Event pipeline.
    outbox_batch_size: int = 100
    outbox_max_attempts: int = 8
    outbox_poll_seconds: float = 1.0
    # Sent events are deleted after this. Consumers refuse a message whose row is gone, so
    # keep it above the queues' and DLQs' MessageRetentionPeriod (SQS default: 4 days).
    outbox_retention_hours: int = 168
    # Event type -> queue names ("notifications", "media"); unrouted events are marked sent.
    event_routes: dict[str, list[str]] = {
        "post.created": ["notifications"],
        "comment.created": ["notifications"],
        "session.scheduled": ["notifications"],
        "session.cancelled": ["notifications"],
        "session.reminder": ["notifications"],
        "media.process": ["media"],
        "media.comment.created": ["notifications"],
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
    # Reconciles (and deletions) running at once; the rest wait (start-up's burst of resumes).
    operator_max_concurrent_reconciles: int = Field(8, ge=1)
    # PostgreSQL connections the operator holds at most, as the owner role: half for the
    # tenants domain (SQLAlchemy), half for role DDL (asyncpg), each pool bounded.
    operator_db_max_connections: int = Field(8, ge=2)

    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_from: str = "Courtside <no-reply@courtside.local>"

    # Trust X-Forwarded-For from these proxies (the ingress): IPs or CIDRs, comma-separated;
    # empty trusts none. "*" is refused: it would let any client pick its own address.
    forwarded_allow_ips: str = ""

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _trusted_proxies_are_addresses(cls, value: str) -> str:
        for entry in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"FORWARDED_ALLOW_IPS entry {entry!r} is not an IP address or CIDR; list "
                    'only the ingress controller\'s addresses ("*" would trust every client).'
                ) from None
        return value

    @model_validator(mode="after")
    def _refuse_public_secrets(self) -> Self:
        """Outside development, refuse to start with secrets anyone can read in this repo."""
        if self.environment == "development":
            return self
        problems = [
            problem
            for name, value, default in (
                ("JWT_ACCESS_SECRET", self.jwt_access_secret, _DEFAULT_ACCESS_SECRET),
                ("JWT_REFRESH_SECRET", self.jwt_refresh_secret, _DEFAULT_REFRESH_SECRET),
            )
            if (problem := _secret_problem(name, value.get_secret_value(), default))
        ]
        # The test harness shares cluster-wide database roles across runs, so only
        # production insists on its own role passwords.
        if self.environment == "production":
            for name, url in (
                ("DATABASE_URL", self.database_url),
                ("MIGRATION_DATABASE_URL", self.migration_database_url),
                ("RELAY_DATABASE_URL", self.relay_database_url),
            ):
                if urlsplit(url).password in DEFAULT_DB_PASSWORDS:
                    problems.append(
                        f"{name} uses a well-known default password; give the role its own."
                    )
        if problems:
            raise ValueError(
                f"refusing to start with ENVIRONMENT={self.environment}:\n  - "
                + "\n  - ".join(problems)
            )
        return self

    @property
    def serves_api_docs(self) -> bool:
        return self.environment != "production" if self.api_docs is None else self.api_docs


_DEFAULT_ACCESS_SECRET = Settings.model_fields["jwt_access_secret"].default.get_secret_value()
_DEFAULT_REFRESH_SECRET = Settings.model_fields["jwt_refresh_secret"].default.get_secret_value()


def _secret_problem(name: str, value: str, default: str) -> str | None:
    if value == default:
        return f"{name} is not set (its built-in default is public: anyone could sign tokens)."
    if PUBLIC_SECRET_MARKER in value.lower():
        return f"{name} is a public placeholder; set it to random bytes."
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"{name} is shorter than {MIN_SECRET_BYTES} bytes; set it to random bytes."
    return None


@lru_cache
def get_settings() -> Settings:
    return Settings()
