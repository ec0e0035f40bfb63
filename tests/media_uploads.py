"""Media in tests: uploading as a client does (an intent from the API, each part PUT
straight to S3 at its presigned URL over plain HTTP, then finalize), the tenant's storage
totals, and running the media worker until its queue is empty."""

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.infra.db import Database
from app.infra.settings import Settings
from tests.factories import Account
from workers.media import MediaHandler
from workers.runtime import Shutdown, SqsConsumer

MIB = 1024 * 1024


async def upload_intent(
    client: httpx.AsyncClient,
    account: Account,
    size: int,
    *,
    content_type: str = "video/mp4",
    filename: str = "swing.mp4",
) -> httpx.Response:
    return await client.post(
        "/media/upload-intent",
        headers=account.headers,
        json={"filename": filename, "content_type": content_type, "size_bytes": size},
    )


async def put_parts(intent: dict, data: bytes) -> list[dict]:
    """PUT `data` in the intent's parts; the parts with their ETags, as finalize takes them."""
    part_size = intent["part_size"]
    async with httpx.AsyncClient(timeout=60) as s3:

        async def put(part: dict) -> dict:
            start = (part["part_number"] - 1) * part_size
            response = await s3.put(part["url"], content=data[start : start + part_size])
            assert response.status_code == 200, response.text
            return {"part_number": part["part_number"], "etag": response.headers["etag"]}

        return list(await asyncio.gather(*(put(p) for p in intent["parts"])))


async def finalize(
    client: httpx.AsyncClient, account: Account, media_id: str, parts: list[dict]
) -> httpx.Response:
    return await client.post(
        f"/media/{media_id}/finalize", headers=account.headers, json={"parts": parts}
    )


async def upload(
    client: httpx.AsyncClient,
    account: Account,
    data: bytes,
    *,
    content_type: str = "video/mp4",
    filename: str = "swing.mp4",
) -> dict:
    """The whole client flow; returns finalize's answer (the asset, processing)."""
    response = await upload_intent(
        client, account, len(data), content_type=content_type, filename=filename
    )
    assert response.status_code == 201, response.text
    intent = response.json()
    parts = await put_parts(intent, data)
    finalized = await finalize(client, account, intent["media_id"], parts)
    assert finalized.status_code == 202, finalized.text
    return finalized.json()


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


async def storage_of(conn: asyncpg.Connection, tenant_id: uuid.UUID) -> tuple[int, int]:
    """(used, reserved) bytes of the tenant, and checks they equal the sums over its assets."""
    row = await conn.fetchrow(
        "SELECT used_bytes, reserved_bytes FROM tenant_storage WHERE tenant_id = $1", tenant_id
    )
    used, reserved = (row["used_bytes"], row["reserved_bytes"]) if row else (0, 0)
    sums = await conn.fetchrow(
        "SELECT coalesce(sum(stored_bytes), 0) AS stored, "
        "coalesce(sum(reserved_bytes), 0) AS reserved FROM media_assets WHERE tenant_id = $1",
        tenant_id,
    )
    assert (used, reserved) == (sums["stored"], sums["reserved"]), "totals drifted from assets"
    return used, reserved


async def set_storage_limits(
    conn: asyncpg.Connection,
    tenant_id: uuid.UUID,
    *,
    max_upload_bytes: int | None = None,
    quota_bytes: int | None = None,
) -> None:
    """What the Tenant operator writes from spec.storage."""
    await conn.execute(
        "UPDATE tenants SET max_upload_bytes = $2, storage_quota_bytes = $3 WHERE id = $1",
        tenant_id,
        max_upload_bytes,
        quota_bytes,
    )


def media_worker_settings(settings: Settings, tmp_path: Path, **overrides: Any) -> Settings:
    """The worker's settings in tests: quick polls, the fastest x264 preset, scratch space
    in the test's own directory."""
    return settings.model_copy(
        update={
            "sqs_wait_seconds": 1,
            "media_video_preset": "ultrafast",
            "media_scratch_dir": str(tmp_path / "scratch"),
            "worker_concurrency": 2,
            **overrides,
        }
    )


async def run_media_worker_until_idle(worker_settings: Settings, s3: Any, queue: str) -> None:
    """The media consumer, in one-shot mode: returns once the queue is empty."""
    db = Database.from_settings(worker_settings)
    try:
        await SqsConsumer(
            worker_settings,
            name="media",
            queue_url=queue,
            handle=MediaHandler(worker_settings, db, s3),
            shutdown=Shutdown(),
            stop_when_idle=True,
        ).run()
    finally:
        await db.dispose()
