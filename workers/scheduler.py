"""Scheduler: periodic jobs, each run by one replica at a time.

A job runs only while its runner holds a PostgreSQL advisory lock (pg_try_advisory_lock on
the job's key), so any number of scheduler replicas may run. Jobs run on one connection as
the relay role, which sees every tenant's outbox. Later features add jobs to JOBS
(abandoned multipart uploads, session reminders).
"""

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import structlog
from prometheus_client import Counter

from app.infra.db import asyncpg_dsn
from app.infra.settings import Settings
from workers.runtime import Shutdown, serve_health

log = structlog.get_logger(__name__)
RUNS = Counter("courtside_scheduler_runs_total", "Scheduled job runs", ["job", "outcome"])


@dataclass(frozen=True)
class Job:
    name: str
    every_seconds: float
    run: Callable[[asyncpg.Connection, Settings], Awaitable[int]]

    @property
    def lock_key(self) -> int:
        digest = hashlib.sha256(f"courtside:{self.name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)


async def cleanup_outbox(conn: asyncpg.Connection, settings: Settings) -> int:
    """Delete events sent longer ago than the retention period (dead ones stay for admins)."""
    result = await conn.execute(
        "DELETE FROM outbox_events WHERE status = 'sent' "
        "AND sent_at < now() - make_interval(hours => $1)",
        settings.outbox_retention_hours,
    )
    return int(result.split()[-1])


JOBS: list[Job] = [Job("outbox-cleanup", 3600, cleanup_outbox)]


async def run_job_once(conn: asyncpg.Connection, settings: Settings, job: Job) -> int | None:
    """Run `job` if no other replica holds its lock; None means another replica has it."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", job.lock_key):
        RUNS.labels(job.name, "skipped").inc()
        return None
    try:
        done = await job.run(conn, settings)
        RUNS.labels(job.name, "ok").inc()
        log.info("job_ran", job=job.name, affected=done)
        return done
    except Exception:
        RUNS.labels(job.name, "failed").inc()
        log.exception("job_failed", job=job.name)
        return None
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", job.lock_key)


async def run(settings: Settings) -> None:
    """`courtside worker scheduler`."""
    shutdown = Shutdown()
    shutdown.install()
    conn = await asyncpg.connect(asyncpg_dsn(settings.relay_database_url))
    next_run = {job.name: 0.0 for job in JOBS}
    last_tick = time.monotonic()

    async def healthy() -> bool:
        return time.monotonic() - last_tick < settings.scheduler_tick_seconds * 3 + 30

    runner = await serve_health(settings.metrics_port, healthy)
    try:
        while not shutdown.requested:
            last_tick = time.monotonic()
            for job in JOBS:
                if next_run[job.name] <= last_tick:
                    await run_job_once(conn, settings, job)
                    next_run[job.name] = last_tick + job.every_seconds
            await shutdown.sleep(settings.scheduler_tick_seconds)
    finally:
        await runner.cleanup()
        await conn.close()
