"""Real backing services for the suite: reuse what the environment names, start the rest.

TEST_DATABASE_URL  a PostgreSQL superuser URL to create a throwaway database on; without it
                   an embedded PostgreSQL server is started in a temporary directory.
REDIS_URL          a Redis to use (keys are namespaced per run); else a redis-server starts.
AWS_ENDPOINT_URL   an S3+SQS endpoint (moto) to use; else moto's server starts.
"""

import asyncio
import os
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from app.infra.aws import ensure_resources
from app.infra.dbadmin import bootstrap, drop_database, migrate
from app.infra.settings import Settings
from courtside.local import devstack


@dataclass
class Services:
    admin_url: str  # superuser, for assertions about the catalog and for cleanup
    database: str
    settings: Settings
    smtp: devstack.SmtpServer
    env: dict[str, str]
    _stoppers: list[object] = field(default_factory=list)

    def stop(self) -> None:
        self.smtp.stop()
        for service in reversed(self._stoppers):
            service.stop()  # type: ignore[attr-defined]


def _with_database(url: str, user: str, password: str, database: str) -> str:
    return (
        make_url(url)
        .set(drivername="postgresql+asyncpg", username=user, password=password, database=database)
        .render_as_string(hide_password=False)
    )


def start_services(workdir: Path) -> Services:
    stoppers: list[object] = []
    admin_url = os.environ.get("TEST_DATABASE_URL")
    if not admin_url:
        pg = devstack.EmbeddedPostgres(workdir / "pgdata").start()
        stoppers.append(pg)
        admin_url = pg.admin_url
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        redis = devstack.RedisServer(workdir / "redis").start()
        stoppers.append(redis)
        redis_url = redis.url
    aws_url = os.environ.get("AWS_ENDPOINT_URL")
    if not aws_url:
        moto = devstack.MotoServer(workdir).start()
        stoppers.append(moto)
        aws_url = moto.url
    smtp = devstack.SmtpServer().start()

    run_id = uuid.uuid4().hex[:8]
    database = f"courtside_test_{run_id}"
    env = {
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": _with_database(admin_url, "courtside_app", "courtside_app", database),
        "MIGRATION_DATABASE_URL": _with_database(
            admin_url, "courtside_owner", "courtside_owner", database
        ),
        "RELAY_DATABASE_URL": _with_database(
            admin_url, "courtside_relay", "courtside_relay", database
        ),
        "REDIS_URL": redis_url,
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "S3_BUCKET": f"courtside-test-{run_id}",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.port),
        # Outside development the app refuses public or short secrets: real random ones.
        "JWT_ACCESS_SECRET": secrets.token_urlsafe(48),
        "JWT_REFRESH_SECRET": secrets.token_urlsafe(48),
        # Generous limits: tests that exercise limits build their own app with low ones.
        "RATE_LIMIT_MAX_PER_IP": "100000",
        "RATE_LIMIT_MAX_PER_USER": "100000",
        "RATE_LIMIT_MAX_PER_TENANT": "100000",
        "RATE_LIMIT_BURST": "10000",
        "TENANT_POLICY_CACHE_SECONDS": "0.2",
        "MEMBERSHIP_CACHE_SECONDS": "0.2",
        "OPERATOR_RESYNC_SECONDS": "1",
        "OPERATOR_NAMESPACE": "courtside",
        # S3's smallest part, so a few MiB already make a multipart upload of several parts.
        "MEDIA_PART_SIZE_BYTES": str(5 * 1024 * 1024),
    }
    os.environ.update(env)
    settings = Settings()
    asyncio.run(bootstrap(admin_url, settings))
    migrate(settings)
    queues = asyncio.run(ensure_resources(settings, prefix=f"courtside-test-{run_id}"))
    env["SQS_NOTIFICATIONS_QUEUE_URL"] = queues["notifications"]
    env["SQS_MEDIA_QUEUE_URL"] = queues["media"]
    os.environ.update(env)
    settings = Settings()
    if os.environ.get("TEST_DATABASE_URL"):
        # A shared server: drop our database at the end.
        stoppers.insert(0, _DatabaseDropper(admin_url, database))
    return Services(admin_url, database, settings, smtp, env, stoppers)


@dataclass
class _DatabaseDropper:
    admin_url: str
    database: str

    def stop(self) -> None:
        asyncio.run(self._drop())

    async def _drop(self) -> None:
        # Roles are cluster-wide: drop the per-tenant roles this run's operator tests made.
        dsn = make_url(self.admin_url).set(database=self.database)
        conn = await asyncpg.connect(dsn.render_as_string(hide_password=False))
        try:
            roles = [r[0] for r in await conn.fetch("SELECT role_name FROM tenant_db_roles")]
        finally:
            await conn.close()
        await drop_database(self.admin_url, self.database)
        conn = await asyncpg.connect(self.admin_url)
        try:
            for role in roles:
                await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await conn.close()
