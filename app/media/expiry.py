"""Uploads never finalized: their S3 multipart upload aborted, the asset expired, the
reservation released.

The scheduler (workers/scheduler.py) runs this as the relay role, which reads no tenant
table: it learns which assets are due from `expired_media_uploads()` (an owner-defined
function, migration 0008, that returns only tenant and media ids), and handles each in
that tenant's transaction as the runtime role, like any other service. The bucket's
AbortIncompleteMultipartUpload lifecycle rule is the backstop for uploads this misses
(docs/media-storage.md).
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg
import structlog
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import func, select

from app.infra.db import Database
from app.media import quota
from app.media.models import MediaAsset, MediaStatus
from app.media.objects import is_missing

log = structlog.get_logger(__name__)

# How many due uploads one run takes on; the rest wait for the next run.
BATCH_SIZE = 200
# How long an upload completed in S3 but not yet finalized in the database is left to
# the finalize that completed it (the API completes it before its commit).
FINALIZE_GRACE = timedelta(minutes=5)


class ExpiryResult(StrEnum):
    EXPIRED = "expired"
    # Finalized, deleted or expired since the listing: nothing to do.
    GONE = "gone"
    # S3 refused the abort: left pending_upload for the next run.
    ABORT_FAILED = "abort_failed"
    # A finalize completed the upload in S3 moments ago and is about to commit.
    FINALIZING = "finalizing"


@dataclass(frozen=True)
class ExpiryRun:
    """What one run did: assets expired, and aborts S3 refused (retried next run)."""

    expired: int = 0
    abort_failed: int = 0


async def due_uploads(relay: asyncpg.Connection, limit: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(tenant_id, media_id) of uploads past their expiry, oldest first; `relay` is a
    connection as the relay role."""
    rows = await relay.fetch("SELECT tenant_id, media_id FROM expired_media_uploads($1)", limit)
    return [(uuid.UUID(str(r["tenant_id"])), uuid.UUID(str(r["media_id"]))) for r in rows]


async def expire_upload(
    db: Database,
    s3: Any,
    bucket: str,
    tenant_id: uuid.UUID,
    media_id: uuid.UUID,
    *,
    finalize_grace: timedelta = FINALIZE_GRACE,
) -> ExpiryResult:
    """Abort one asset's multipart upload if it is still pending past its expiry, mark it
    expired and release its reservation, in one transaction of its tenant.

    The asset's row stays locked while S3 is asked, so a finalize of the same asset waits
    for this transaction and then finds the asset expired (or this finds it finalized).
    If S3 refuses, the transaction changes nothing and the next run tries again. An
    upload S3 no longer knows was aborted already (the lifecycle rule, a run whose commit
    failed) or completed by a finalize that has not committed: its object, if any, is left
    to that finalize for `finalize_grace`, then removed with the asset's expiry, so no
    object outlives its accounting."""
    async with db.transaction(tenant_id) as session:
        asset = await session.scalar(
            select(MediaAsset)
            .where(
                MediaAsset.id == media_id,
                MediaAsset.status == MediaStatus.PENDING_UPLOAD,
                MediaAsset.upload_expires_at < func.now(),
            )
            .with_for_update()
        )
        if asset is None:
            return ExpiryResult.GONE
        try:
            removed = await _remove_upload(s3, bucket, asset, finalize_grace)
        except (ClientError, BotoCoreError) as exc:
            log.warning(
                "media_upload_abort_failed",
                tenant_id=str(tenant_id),
                media_id=str(media_id),
                error=str(exc),
            )
            return ExpiryResult.ABORT_FAILED
        if not removed:
            return ExpiryResult.FINALIZING
        asset.status = MediaStatus.EXPIRED
        asset.upload_id = None  # as finalize leaves it: no upload in S3 any more
        await quota.release(session, asset)
    log.info("media_upload_expired", tenant_id=str(tenant_id), media_id=str(media_id))
    return ExpiryResult.EXPIRED


async def _remove_upload(s3: Any, bucket: str, asset: MediaAsset, grace: timedelta) -> bool:
    """Abort the asset's upload, or delete the object a finalize completed from it more
    than `grace` ago; False: it completed within `grace`, leave it to that finalize."""
    if asset.upload_id:
        try:
            await s3.abort_multipart_upload(
                Bucket=bucket, Key=asset.s3_key, UploadId=asset.upload_id
            )
            return True
        except ClientError as exc:
            if not is_missing(exc):
                raise
    try:
        head = await s3.head_object(Bucket=bucket, Key=asset.s3_key)
    except ClientError as exc:
        if is_missing(exc):
            return True
        raise
    if datetime.now(UTC) - head["LastModified"] < grace:
        return False
    await s3.delete_object(Bucket=bucket, Key=asset.s3_key)
    return True


async def expire_stale_uploads(
    relay: asyncpg.Connection, db: Database, s3: Any, bucket: str, *, limit: int = BATCH_SIZE
) -> ExpiryRun:
    """Expire up to `limit` uploads not finalized in time (see expire_upload)."""
    expired = failed = 0
    for tenant_id, media_id in await due_uploads(relay, limit):
        result = await expire_upload(db, s3, bucket, tenant_id, media_id)
        expired += result is ExpiryResult.EXPIRED
        failed += result is ExpiryResult.ABORT_FAILED
    return ExpiryRun(expired=expired, abort_failed=failed)
