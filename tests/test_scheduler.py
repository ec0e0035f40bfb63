import asyncpg
import pytest

from app.infra.db import asyncpg_dsn
from workers.scheduler import JOBS, run_job_once


@pytest.fixture
async def relay_conn(settings):
    conn = await asyncpg.connect(asyncpg_dsn(settings.relay_database_url))
    yield conn
    await conn.close()


async def test_outbox_cleanup_deletes_only_old_sent_events(
    settings, superuser_conn, client, relay_conn
):
    from tests.factories import register_tenant

    admin = await register_tenant(client)
    rows = await superuser_conn.fetch(
        "INSERT INTO outbox_events (tenant_id, event_type, aggregate_type, aggregate_id, "
        "payload, status, sent_at) VALUES "
        "($1, 'x', 'x', 'old', '{}', 'sent', now() - make_interval(hours => $2)), "
        "($1, 'x', 'x', 'new', '{}', 'sent', now()), "
        "($1, 'x', 'x', 'dead', '{}', 'dead', now() - make_interval(hours => $2)) RETURNING id",
        admin.tenant_id,
        settings.outbox_retention_hours + 1,
    )
    cleanup = next(job for job in JOBS if job.name == "outbox-cleanup")
    assert await run_job_once(relay_conn, settings, cleanup) >= 1
    left = {
        r["aggregate_id"]
        for r in await superuser_conn.fetch(
            "SELECT aggregate_id FROM outbox_events WHERE id = ANY($1::uuid[])",
            [r["id"] for r in rows],
        )
    }
    assert left == {"new", "dead"}


async def test_a_job_runs_on_one_replica_at_a_time(settings, superuser_conn, relay_conn):
    cleanup = next(job for job in JOBS if job.name == "outbox-cleanup")
    await superuser_conn.execute("SELECT pg_advisory_lock($1)", cleanup.lock_key)
    try:
        assert await run_job_once(relay_conn, settings, cleanup) is None
    finally:
        await superuser_conn.execute("SELECT pg_advisory_unlock($1)", cleanup.lock_key)
    assert await run_job_once(relay_conn, settings, cleanup) is not None
