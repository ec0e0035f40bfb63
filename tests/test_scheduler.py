import asyncio
import os
import signal
import socket
import sys
import uuid
from datetime import timedelta

import asyncpg
import pytest

from app.infra import aws
from app.infra.db import asyncpg_dsn
from app.media import quota
from app.media.models import MediaAsset
from tests.factories import register_tenant
from workers.scheduler import JOBS, JobContext, run_job_once


@pytest.fixture
async def relay_conn(settings):
    conn = await asyncpg.connect(asyncpg_dsn(settings.relay_database_url))
    yield conn
    await conn.close()


@pytest.fixture
async def ctx(settings, relay_conn, db):
    async with aws.client(settings, "s3") as s3:
        yield JobContext(conn=relay_conn, settings=settings, db=db, s3=s3)


async def test_outbox_cleanup_deletes_only_old_sent_events(settings, superuser_conn, client, ctx):
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
    assert await run_job_once(ctx, cleanup) >= 1
    left = {
        r["aggregate_id"]
        for r in await superuser_conn.fetch(
            "SELECT aggregate_id FROM outbox_events WHERE id = ANY($1::uuid[])",
            [r["id"] for r in rows],
        )
    }
    assert left == {"new", "dead"}


async def test_a_job_runs_on_one_replica_at_a_time(superuser_conn, ctx):
    cleanup = next(job for job in JOBS if job.name == "outbox-cleanup")
    await superuser_conn.execute("SELECT pg_advisory_lock($1)", cleanup.lock_key)
    try:
        assert await run_job_once(ctx, cleanup) is None
    finally:
        await superuser_conn.execute("SELECT pg_advisory_unlock($1)", cleanup.lock_key)
    assert await run_job_once(ctx, cleanup) is not None


async def test_the_scheduler_process_expires_stale_uploads(
    settings, superuser_conn, client, db, tmp_path
):
    """`courtside worker scheduler` as deployed: its jobs get the relay connection, the
    runtime role's Database and S3 (tests/test_media_expiry.py covers the rules)."""
    admin = await register_tenant(client)
    media_id = uuid.uuid4()
    key = f"tenants/{admin.tenant_id}/media/{media_id}/original"
    async with aws.client(settings, "s3") as s3:
        upload_id = (await s3.create_multipart_upload(Bucket=settings.s3_bucket, Key=key))[
            "UploadId"
        ]
    await superuser_conn.execute(
        "INSERT INTO media_assets (id, tenant_id, owner_id, status, content_type, size_bytes, "
        "s3_key, upload_id, upload_expires_at) VALUES "
        "($1, $2, $3, 'pending_upload', 'video/mp4', 100, $4, $5, now() - $6::interval)",
        media_id,
        admin.tenant_id,
        admin.user_id,
        key,
        upload_id,
        timedelta(hours=1),
    )
    async with db.transaction(admin.tenant_id) as session:
        asset = await session.get(MediaAsset, media_id, with_for_update=True)
        await quota.reserve(session, asset, 100, quota=10**9)

    log = tmp_path / "scheduler.log"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "courtside.cli",
        "worker",
        "scheduler",
        env={**os.environ, "METRICS_PORT": str(port)},
        stdout=log.open("wb"),
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        status = None
        for _ in range(300):  # a deadline, not a timing assertion
            status = await superuser_conn.fetchval(
                "SELECT status FROM media_assets WHERE id = $1", media_id
            )
            if status == "expired" or process.returncode is not None:
                break
            await asyncio.sleep(0.2)
        assert status == "expired", log.read_text()[-3000:]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await process.wait()
    assert process.returncode == 0
    reserved = await superuser_conn.fetchval(
        "SELECT reserved_bytes FROM tenant_storage WHERE tenant_id = $1", admin.tenant_id
    )
    assert reserved == 0
