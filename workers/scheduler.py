"""Scheduler: periodic jobs, each run by one replica at a time.

A job runs only while its runner holds a PostgreSQL advisory lock (pg_try_advisory_lock on
the job's key), so any number of scheduler replicas may run. The locks are held on one
connection as the relay role, which sees every tenant's outbox and no other tenant table.
A job that must act in a tenant's rows does so through the runtime role's `Database`, one
tenant transaction at a time, as services do; each job gets a JobContext with both, and
an S3 client.
"""

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter

import app.models  # noqa: F401  (every table mapped: the assets' foreign keys resolve at flush)
from app.bookings.reminders import send_due_reminders
from app.infra import aws
from app.infra.db import Database, asyncpg_dsn
from app.infra.settings import Settings
from app.media.expiry import expire_stale_uploads
from workers.runtime import Shutdown, serve_health

log = structlog.get_logger(__name__)
RUNS = Counter("courtside_scheduler_runs_total", "Scheduled job runs", ["job", "outcome"])
EXPIRED_UPLOADS = Counter(
    "courtside_media_uploads_expired_total",
    "Stale multipart uploads the scheduler handled, by outcome (abort_failed: retried next run)",
    ["outcome"],
)
# The runtime role's connections the scheduler holds: its jobs run one at a time.
RUNTIME_POOL_SIZE = 1


@dataclass(frozen=True)
class JobContext:
    """What a job may use: `conn` (relay role; also holds the job's advisory lock), `db`
    (runtime role, for tenant transactions), `s3` (an open aiobotocore S3 client)."""

    conn: asyncpg.Connection
    settings: Settings
    db: Database
    s3: Any


@dataclass(frozen=True)
class Job:
    name: str
    every_seconds: float
    run: Callable[[JobContext], Awaitable[int]]

    @property
    def lock_key(self) -> int:
        digest = hashlib.sha256(f"courtside:{self.name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)


async def cleanup_outbox(ctx: JobContext) -> int:
    """Delete events sent longer ago than the retention period (dead ones stay for admins)."""
    result = await ctx.conn.execute(
        "DELETE FROM outbox_events WHERE status = 'sent' "
        "AND sent_at < now() - make_interval(hours => $1)",
        ctx.settings.outbox_retention_hours,
    )
    return int(result.split()[-1])


async def expire_media_uploads(ctx: JobContext) -> int:
    """Abort uploads not finalized within MEDIA_UPLOAD_EXPIRY_HOURS (app/media/expiry.py)."""
    done = await expire_stale_uploads(ctx.conn, ctx.db, ctx.s3, ctx.settings.s3_bucket)
    EXPIRED_UPLOADS.labels("expired").inc(done.expired)
    EXPIRED_UPLOADS.labels("abort_failed").inc(done.abort_failed)
    if done.abort_failed:
        log.warning("media_upload_aborts_failed", count=done.abort_failed)
    return done.expired


async def send_session_reminders(ctx: JobContext) -> int:
    """Reminders 24 h and 1 h before each scheduled session, once each
    (app/bookings/reminders.py)."""
    return await send_due_reminders(ctx.conn, ctx.db)


JOBS: list[Job] = [
    Job("outbox-cleanup", 3600, cleanup_outbox),
    # An upload expires at most this late; the lifecycle rule is a day later still.
    Job("media-upload-expiry", 600, expire_media_uploads),
    # A reminder goes out at most this late (plus a tick).
    Job("session-reminders", 60, send_session_reminders),
]


async def run_job_once(ctx: JobContext, job: Job) -> int | None:
    """Run `job` if no other replica holds its lock; None means another replica has it."""
    if not await ctx.conn.fetchval("SELECT pg_try_advisory_lock($1)", job.lock_key):
        RUNS.labels(job.name, "skipped").inc()
        return None
    try:
        done = await job.run(ctx)
        RUNS.labels(job.name, "ok").inc()
        log.info("job_ran", job=job.name, affected=done)
        return done
    except Exception:
        RUNS.labels(job.name, "failed").inc()
        log.exception("job_failed", job=job.name)
        return None
    finally:
        await ctx.conn.execute("SELECT pg_advisory_unlock($1)", job.lock_key)


async def run(settings: Settings) -> None:
    """`courtside worker scheduler`."""
    shutdown = Shutdown()
    shutdown.install()
    conn = await asyncpg.connect(asyncpg_dsn(settings.relay_database_url))
    db = Database(
        settings.database_url,
        pool_size=RUNTIME_POOL_SIZE,
        max_overflow=0,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        application_name="courtside-scheduler",
    )
    next_run = {job.name: 0.0 for job in JOBS}
    last_tick = time.monotonic()

    async def healthy() -> bool:
        return time.monotonic() - last_tick < settings.scheduler_tick_seconds * 3 + 30

    runner = await serve_health(settings.metrics_port, healthy)
    try:
        async with aws.client(settings, "s3") as s3:
            ctx = JobContext(conn=conn, settings=settings, db=db, s3=s3)
            while not shutdown.requested:
                last_tick = time.monotonic()
                for job in JOBS:
                    if next_run[job.name] <= last_tick:
                        await run_job_once(ctx, job)
                        next_run[job.name] = last_tick + job.every_seconds
                await shutdown.sleep(settings.scheduler_tick_seconds)
    finally:
        await runner.cleanup()
        await db.dispose()
        await conn.close()
