"""Uploads never finalized are aborted in S3, marked expired and their reservation released,
by the scheduler's job (relay role + runtime role, real moto S3, real PostgreSQL)."""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from app.infra import aws
from app.infra.db import asyncpg_dsn
from app.media import quota
from app.media.expiry import ExpiryResult, due_uploads, expire_upload
from app.media.models import MediaAsset
from tests.factories import register_tenant
from tests.operator.conftest import onboard_tenant, role_dsn
from workers.scheduler import JOBS, JobContext, run_job_once

QUOTA = 10**12
PART = b"\x00" * 1024
EXPIRY_JOB = next(job for job in JOBS if job.name == "media-upload-expiry")


@pytest.fixture
async def relay_conn(settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(settings.relay_database_url))
    yield conn
    await conn.close()


@pytest.fixture
async def s3(settings) -> AsyncIterator[Any]:
    async with aws.client(settings, "s3") as client:
        yield client


@pytest.fixture
def ctx(relay_conn, settings, db, s3) -> JobContext:
    return JobContext(conn=relay_conn, settings=settings, db=db, s3=s3)


@pytest.fixture
async def tenant(client):
    return await register_tenant(client)


@dataclass
class Upload:
    tenant_id: uuid.UUID
    media_id: uuid.UUID
    key: str
    upload_id: str
    size: int


async def start_upload(
    settings, s3, superuser_conn, db, tenant, *, expires_in: timedelta, size: int = 4096
) -> Upload:
    """An upload intent as the API leaves it: a real multipart upload with a part already
    PUT, the asset pending_upload, its size reserved."""
    media_id = uuid.uuid4()
    key = f"tenants/{tenant.tenant_id}/media/{media_id}/original"
    created = await s3.create_multipart_upload(
        Bucket=settings.s3_bucket, Key=key, ContentType="video/mp4"
    )
    upload_id = created["UploadId"]
    await s3.upload_part(
        Bucket=settings.s3_bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=PART
    )
    await superuser_conn.execute(
        "INSERT INTO media_assets (id, tenant_id, owner_id, status, filename, content_type, "
        "size_bytes, s3_key, upload_id, part_size, part_count, upload_expires_at) "
        "VALUES ($1, $2, $3, 'pending_upload', 'swing.mp4', 'video/mp4', $4, $5, $6, $4, 1, "
        "now() + $7::interval)",
        media_id,
        tenant.tenant_id,
        tenant.user_id,
        size,
        key,
        upload_id,
        expires_in,
    )
    async with db.transaction(tenant.tenant_id) as session:
        asset = await session.get(MediaAsset, media_id, with_for_update=True)
        await quota.reserve(session, asset, size, quota=QUOTA)
    return Upload(tenant.tenant_id, media_id, key, upload_id, size)


async def finalize(settings, s3, db, upload: Upload) -> None:
    """What finalize leaves: the upload completed in S3, the asset processing, its
    reservation turned into use."""
    await complete_in_s3(settings, s3, upload)
    async with db.transaction(upload.tenant_id) as session:
        asset = await session.get(MediaAsset, upload.media_id, with_for_update=True)
        await quota.settle_upload(session, asset, len(PART), quota=QUOTA)
        asset.status = "processing"


async def _etag(settings, s3, upload: Upload) -> str:
    parts = await s3.list_parts(
        Bucket=settings.s3_bucket, Key=upload.key, UploadId=upload.upload_id
    )
    return parts["Parts"][0]["ETag"]


async def open_uploads(settings, s3) -> set[str]:
    listed = await s3.list_multipart_uploads(Bucket=settings.s3_bucket)
    return {u["UploadId"] for u in listed.get("Uploads", [])}


async def asset_row(superuser_conn, upload: Upload) -> asyncpg.Record:
    return await superuser_conn.fetchrow(
        "SELECT status, reserved_bytes, stored_bytes FROM media_assets WHERE id = $1",
        upload.media_id,
    )


async def storage(superuser_conn, tenant_id: uuid.UUID) -> tuple[int, int]:
    row = await superuser_conn.fetchrow(
        "SELECT used_bytes, reserved_bytes FROM tenant_storage WHERE tenant_id = $1", tenant_id
    )
    return (row["used_bytes"], row["reserved_bytes"])


async def test_a_stale_upload_is_aborted_expired_and_released(
    settings, s3, superuser_conn, db, tenant, ctx
):
    stale = await start_upload(
        settings, s3, superuser_conn, db, tenant, expires_in=timedelta(hours=-1), size=7000
    )
    fresh = await start_upload(
        settings, s3, superuser_conn, db, tenant, expires_in=timedelta(hours=1), size=3000
    )
    assert await storage(superuser_conn, tenant.tenant_id) == (0, 10000)

    assert await run_job_once(ctx, EXPIRY_JOB) >= 1

    uploads = await open_uploads(settings, s3)
    assert stale.upload_id not in uploads
    assert fresh.upload_id in uploads
    assert dict(await asset_row(superuser_conn, stale)) == {
        "status": "expired",
        "reserved_bytes": 0,
        "stored_bytes": 0,
    }
    assert dict(await asset_row(superuser_conn, fresh)) == {
        "status": "pending_upload",
        "reserved_bytes": 3000,
        "stored_bytes": 0,
    }
    assert await storage(superuser_conn, tenant.tenant_id) == (0, 3000)


async def test_a_finalized_upload_past_its_expiry_is_left_alone(
    settings, s3, superuser_conn, db, tenant, ctx
):
    upload = await start_upload(
        settings, s3, superuser_conn, db, tenant, expires_in=timedelta(hours=-1)
    )
    await finalize(settings, s3, db, upload)
    before = await storage(superuser_conn, tenant.tenant_id)
    assert before == (len(PART), 0)

    await run_job_once(ctx, EXPIRY_JOB)

    assert (await asset_row(superuser_conn, upload))["status"] == "processing"
    assert await storage(superuser_conn, tenant.tenant_id) == before
    head = await s3.head_object(Bucket=settings.s3_bucket, Key=upload.key)
    assert head["ContentLength"] == len(PART)


async def test_a_second_run_changes_nothing(settings, s3, superuser_conn, db, tenant, ctx):
    upload = await start_upload(
        settings, s3, superuser_conn, db, tenant, expires_in=timedelta(minutes=-5)
    )
    assert await run_job_once(ctx, EXPIRY_JOB) >= 1
    after_first = (
        dict(await asset_row(superuser_conn, upload)),
        await storage(superuser_conn, tenant.tenant_id),
    )

    assert await run_job_once(ctx, EXPIRY_JOB) == 0
    # Asked again about the same asset (a listing taken before the first run committed).
    result = await expire_upload(db, s3, settings.s3_bucket, upload.tenant_id, upload.media_id)
    assert result is ExpiryResult.GONE
    assert (
        dict(await asset_row(superuser_conn, upload)),
        await storage(superuser_conn, tenant.tenant_id),
    ) == after_first
    assert after_first[1] == (0, 0)


async def test_an_upload_s3_already_forgot_is_still_expired(
    settings, s3, superuser_conn, db, tenant, ctx
):
    """The lifecycle rule (or an earlier run whose commit failed) aborted it first."""
    upload = await start_upload(
        settings, s3, superuser_conn, db, tenant, expires_in=timedelta(hours=-2)
    )
    await s3.abort_multipart_upload(
        Bucket=settings.s3_bucket, Key=upload.key, UploadId=upload.upload_id
    )

    result = await expire_upload(db, s3, settings.s3_bucket, upload.tenant_id, upload.media_id)

    assert result is ExpiryResult.EXPIRED
    assert (await asset_row(superuser_conn, upload))["status"] == "expired"
    assert await storage(superuser_conn, tenant.tenant_id) == (0, 0)


async def complete_in_s3(settings, s3, upload: Upload) -> None:
    """What a finalize does before its commit: completes the upload in S3."""
    await s3.complete_multipart_upload(
        Bucket=settings.s3_bucket,
        Key=upload.key,
        UploadId=upload.upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": await _etag(settings, s3, upload)}]},
    )


async def test_an_upload_a_finalize_just_completed_is_left_to_that_finalize(
    settings, s3, superuser_conn, db, tenant
):
    upload = await start_upload(
        settings, s3, superuser_conn, db, tenant, expires_in=timedelta(hours=-1), size=6000
    )
    await complete_in_s3(settings, s3, upload)

    result = await expire_upload(db, s3, settings.s3_bucket, upload.tenant_id, upload.media_id)

    assert result is ExpiryResult.FINALIZING
    assert (await asset_row(superuser_conn, upload))["status"] == "pending_upload"
    assert await storage(superuser_conn, tenant.tenant_id) == (0, 6000)
    assert (await s3.head_object(Bucket=settings.s3_bucket, Key=upload.key))["ContentLength"]


async def test_an_upload_completed_but_never_finalized_leaves_no_object(
    settings, s3, superuser_conn, db, tenant
):
    """A finalize that completed the upload in S3 and then failed, long ago: the object
    would take space no one counts."""
    upload = await start_upload(
        settings, s3, superuser_conn, db, tenant, expires_in=timedelta(hours=-1), size=6000
    )
    await complete_in_s3(settings, s3, upload)

    result = await expire_upload(
        db,
        s3,
        settings.s3_bucket,
        upload.tenant_id,
        upload.media_id,
        finalize_grace=timedelta(0),
    )

    assert result is ExpiryResult.EXPIRED
    assert (await asset_row(superuser_conn, upload))["status"] == "expired"
    assert await storage(superuser_conn, tenant.tenant_id) == (0, 0)
    listed = await s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix=upload.key)
    assert listed.get("Contents", []) == []


async def test_an_abort_s3_refuses_is_left_for_the_next_run(
    settings, s3, superuser_conn, db, tenant, relay_conn
):
    upload = await start_upload(
        settings, s3, superuser_conn, db, tenant, expires_in=timedelta(hours=-1), size=5000
    )
    # A bucket S3 doesn't have: a real error that is not NoSuchUpload.
    wrong = settings.model_copy(update={"s3_bucket": f"missing-{uuid.uuid4().hex[:8]}"})
    refused = JobContext(conn=relay_conn, settings=wrong, db=db, s3=s3)

    await run_job_once(refused, EXPIRY_JOB)

    assert (await asset_row(superuser_conn, upload))["status"] == "pending_upload"
    assert await storage(superuser_conn, tenant.tenant_id) == (0, 5000)
    assert upload.upload_id in await open_uploads(settings, s3)

    await run_job_once(JobContext(conn=relay_conn, settings=settings, db=db, s3=s3), EXPIRY_JOB)

    assert (await asset_row(superuser_conn, upload))["status"] == "expired"
    assert await storage(superuser_conn, tenant.tenant_id) == (0, 0)
    assert upload.upload_id not in await open_uploads(settings, s3)


async def test_the_listing_returns_ids_only_and_honours_its_limit(
    settings, s3, superuser_conn, db, tenant, relay_conn
):
    for _ in range(2):
        await start_upload(settings, s3, superuser_conn, db, tenant, expires_in=timedelta(hours=-1))
    rows = await relay_conn.fetch("SELECT * FROM expired_media_uploads(1)")
    assert len(rows) == 1
    assert list(rows[0].keys()) == ["tenant_id", "media_id"]
    due = await due_uploads(relay_conn, 100)
    mine = {m for t, m in due if t == tenant.tenant_id}
    assert len(mine) == 2


async def test_the_relay_role_still_reads_no_media_assets(relay_conn, tenant):
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await relay_conn.fetch("SELECT id FROM media_assets")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await relay_conn.fetch("SELECT tenant_id FROM tenant_storage")


async def test_the_runtime_role_may_not_list_other_tenants_uploads(
    settings, s3, superuser_conn, db, tenant, client, runtime_conn
):
    await start_upload(settings, s3, superuser_conn, db, tenant, expires_in=timedelta(hours=-1))
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await runtime_conn.fetch("SELECT * FROM expired_media_uploads(100)")
    # Nor does the scan's policy show this tenant's pending uploads to another tenant.
    other = await register_tenant(client)
    async with runtime_conn.transaction():
        await runtime_conn.execute(
            "SELECT set_config('app.tenant_id', $1, true)", str(other.tenant_id)
        )
        assert await runtime_conn.fetchval("SELECT count(*) FROM media_assets") == 0


async def test_a_tenants_own_database_role_may_not_call_it(
    settings, s3, superuser_conn, db, tenant, tmp_path
):
    await start_upload(settings, s3, superuser_conn, db, tenant, expires_in=timedelta(hours=-1))
    _, secret = await onboard_tenant(settings, tmp_path)
    conn = await asyncpg.connect(role_dsn(settings, secret["username"], secret["password"]))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM expired_media_uploads(100)")
        # Its own tenant has no media; the victim's pending upload stays out of sight.
        assert await conn.fetchval("SELECT count(*) FROM media_assets") == 0
    finally:
        await conn.close()


# --- The bucket: the lifecycle backstop and the browsers' CORS rule (ensure_resources) ---


async def test_the_bucket_aborts_incomplete_uploads_a_day_after_the_scheduler(settings, s3):
    lifecycle = await s3.get_bucket_lifecycle_configuration(Bucket=settings.s3_bucket)
    [rule] = [r for r in lifecycle["Rules"] if r["ID"] == aws.LIFECYCLE_RULE_ID]
    assert rule["Status"] == "Enabled"
    assert rule["Filter"] == {"Prefix": ""}  # the whole bucket
    # 24 hours of MEDIA_UPLOAD_EXPIRY_HOURS: 1 day, and a day more.
    assert settings.media_upload_expiry_hours == 24
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 2}


@pytest.mark.parametrize("hours, days", [(1, 2), (24, 2), (25, 3), (72, 4), (0.5, 2)])
def test_the_backstop_rounds_the_expiry_up_to_days_and_adds_one(settings, hours, days):
    longer = settings.model_copy(update={"media_upload_expiry_hours": hours})
    assert aws.abort_incomplete_upload_days(longer) == days


async def test_ensure_resources_updates_its_rules_and_keeps_the_buckets_others(settings, s3):
    bucket = f"courtside-rules-{uuid.uuid4().hex[:8]}"
    await s3.create_bucket(Bucket=bucket)
    theirs_lifecycle = {
        "ID": "logs-expire",
        "Status": "Enabled",
        "Filter": {"Prefix": "logs/"},
        "Expiration": {"Days": 30},
    }
    await s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [theirs_lifecycle]}
    )
    theirs_cors = {"ID": "admin-tool", "AllowedMethods": ["GET"], "AllowedOrigins": ["https://a"]}
    await s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [theirs_cors]})
    configured = settings.model_copy(
        update={
            "s3_bucket": bucket,
            "media_upload_expiry_hours": 48,
            "media_cors_origins": ["https://app.example"],
        }
    )

    for _ in range(2):  # idempotent: one rule of ours however often it runs
        await aws.ensure_resources(configured, prefix=bucket)

    rules = (await s3.get_bucket_lifecycle_configuration(Bucket=bucket))["Rules"]
    assert sorted(r["ID"] for r in rules) == sorted(["logs-expire", aws.LIFECYCLE_RULE_ID])
    ours = next(r for r in rules if r["ID"] == aws.LIFECYCLE_RULE_ID)
    assert ours["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 3}
    cors = (await s3.get_bucket_cors(Bucket=bucket))["CORSRules"]
    assert sorted(r["ID"] for r in cors) == sorted(["admin-tool", aws.CORS_RULE_ID])
    ours = next(r for r in cors if r["ID"] == aws.CORS_RULE_ID)
    assert ours["AllowedOrigins"] == ["https://app.example"]


async def test_the_bucket_lets_browsers_put_parts_and_get_playback(settings, s3):
    cors = (await s3.get_bucket_cors(Bucket=settings.s3_bucket))["CORSRules"]
    [rule] = [r for r in cors if r["ID"] == aws.CORS_RULE_ID]
    assert sorted(rule["AllowedMethods"]) == ["GET", "HEAD", "PUT"]
    assert rule["ExposeHeaders"] == ["ETag"]
    assert rule["AllowedOrigins"] == ["*"]  # the tests run with ENVIRONMENT=test

    # As a browser on another origin does it: a preflight, then the PUT of a part to its
    # presigned URL, whose ETag the page must be allowed to read.
    key = f"tenants/{uuid.uuid4()}/media/{uuid.uuid4()}/original"
    upload_id = (await s3.create_multipart_upload(Bucket=settings.s3_bucket, Key=key))["UploadId"]
    url = await s3.generate_presigned_url(
        "upload_part",
        Params={"Bucket": settings.s3_bucket, "Key": key, "UploadId": upload_id, "PartNumber": 1},
        ExpiresIn=300,
    )
    origin = "https://coach.example"
    async with httpx.AsyncClient() as browser:
        preflight = await browser.options(
            url,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == origin
        assert "PUT" in preflight.headers["access-control-allow-methods"]
        put = await browser.put(url, content=PART, headers={"Origin": origin})
        assert put.status_code == 200, put.text
        assert put.headers["access-control-allow-origin"] == origin
        assert put.headers["access-control-expose-headers"] == "ETag"
        assert put.headers["etag"]
    await s3.abort_multipart_upload(Bucket=settings.s3_bucket, Key=key, UploadId=upload_id)


def test_outside_development_browsers_default_to_the_web_apps_origin(settings):
    production = settings.model_copy(
        update={"environment": "production", "public_url": "https://app.courtside.example/x"}
    )
    assert aws.media_cors_rule(production)["AllowedOrigins"] == ["https://app.courtside.example"]
    listed = production.model_copy(update={"media_cors_origins": ["https://a", "https://b"]})
    assert aws.media_cors_rule(listed)["AllowedOrigins"] == ["https://a", "https://b"]
