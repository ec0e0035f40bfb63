"""Media: uploads straight to S3 in presigned parts, finalize, metadata, playback, deletion,
and comments at a moment of a video. Who may do what: app/media/permissions.py; the
tenant's storage quota: app/media/quota.py; processing: the media worker
(app/media/processing.py).

S3 calls are never made while the tenant's storage row is locked: an upload is created in
S3 before its reservation, and completed before its reservation is settled, so a slow S3
never holds up the tenant's other uploads. An S3 step left behind by a failure in between
(an upload created for a refused reservation, an object completed for a finalize that did
not commit) is aborted on the spot, found again by the next finalize, or aborted by the
scheduler when the upload expires.
"""

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from botocore.exceptions import ClientError
from sqlalchemy import and_, or_, select

from app.auth.caller import Caller
from app.events.outbox import add_event
from app.infra.db import Database
from app.infra.errors import (
    Conflict,
    Gone,
    QuotaExceeded,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.infra.pagination import Page
from app.media import permissions, quota
from app.media.models import MediaAsset, MediaComment, MediaStatus
from app.media.objects import MediaObjects, StoredPart, is_missing, normalize_etag
from app.tenants.models import Tenant
from app.tenants.policy import TenantPolicy, policy_from_row

log = structlog.get_logger(__name__)

MAX_PARTS = 10_000
MIN_PART_BYTES = 5 * 1024 * 1024
MAX_PART_BYTES = 5 * 1024**3
_MIB = 1024 * 1024


def object_prefix(tenant_id: uuid.UUID, media_id: uuid.UUID) -> str:
    """Every object of one asset lives under this prefix: its original and renditions."""
    return f"tenants/{tenant_id}/media/{media_id}/"


def original_key(tenant_id: uuid.UUID, media_id: uuid.UUID) -> str:
    return object_prefix(tenant_id, media_id) + "original"


def plan_parts(size_bytes: int, preferred_part_bytes: int) -> tuple[int, int]:
    """(part size, part count) for a file: the preferred size, or bigger parts (whole
    MiB) when it would take more than S3's 10,000."""
    part_size = max(preferred_part_bytes, MIN_PART_BYTES)
    if math.ceil(size_bytes / part_size) > MAX_PARTS:
        part_size = math.ceil(size_bytes / MAX_PARTS / _MIB) * _MIB
    part_size = min(part_size, MAX_PART_BYTES)
    return part_size, max(1, math.ceil(size_bytes / part_size))


async def _policy(session: Any, settings: Any, tenant_id: uuid.UUID) -> TenantPolicy:
    """The tenant's storage limits as they are now (not the API's cached copy): the
    quota check must see a quota the operator has just lowered."""
    return policy_from_row(settings, await session.get(Tenant, tenant_id))


@dataclass(frozen=True)
class UploadTicket:
    """What a client needs to PUT an upload's parts to S3."""

    asset: MediaAsset
    part_urls: list[tuple[int, str]]
    urls_expire_at: datetime
    uploaded: list[StoredPart]


async def create_upload(
    db: Database,
    objects: MediaObjects,
    caller: Caller,
    *,
    filename: str,
    content_type: str,
    size_bytes: int,
) -> UploadTicket:
    """Start an upload: an S3 multipart upload, the asset (pending_upload) and its
    reservation of `size_bytes` of the tenant's quota. A type not allowed is refused
    (415); a file over the tenant's maxUploadBytes, or one the quota can't hold, too (413,
    saying how many bytes remain), and nothing is reserved."""
    settings = objects.settings
    if content_type not in settings.media_allowed_types:
        raise UnsupportedMediaType(
            f"{content_type} is not accepted.", allowed_types=settings.media_allowed_types
        )
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        limits = await _policy(session, settings, caller.tenant_id)
        used = await quota.usage(session, caller.tenant_id)
    remaining = used.remaining(limits.storage_quota_bytes)
    if size_bytes > limits.max_upload_bytes:
        raise QuotaExceeded(
            f"Files may be at most {limits.max_upload_bytes} bytes.",
            max_upload_bytes=limits.max_upload_bytes,
            remaining_bytes=remaining,
        )
    if size_bytes > remaining:  # checked again, atomically, when reserving
        raise QuotaExceeded(
            f"The tenant's storage quota leaves {remaining} bytes; this needs {size_bytes}.",
            remaining_bytes=remaining,
            quota_bytes=limits.storage_quota_bytes,
        )

    media_id = uuid.uuid4()
    key = original_key(caller.tenant_id, media_id)
    part_size, part_count = plan_parts(size_bytes, settings.media_part_size_bytes)
    upload_id = await objects.create_upload(key, content_type)
    try:
        async with db.transaction(caller.tenant_id, caller.user_id) as session:
            limits = await _policy(session, settings, caller.tenant_id)
            asset = MediaAsset(
                id=media_id,
                tenant_id=caller.tenant_id,
                owner_id=caller.user_id,
                status=MediaStatus.PENDING_UPLOAD,
                filename=filename,
                content_type=content_type,
                size_bytes=size_bytes,
                s3_key=key,
                upload_id=upload_id,
                part_size=part_size,
                part_count=part_count,
                upload_expires_at=datetime.now(UTC)
                + timedelta(hours=settings.media_upload_expiry_hours),
                reserved_bytes=0,
                stored_bytes=0,
                renditions=[],
            )
            session.add(asset)
            await quota.reserve(session, asset, size_bytes, quota=limits.storage_quota_bytes)
            await session.flush()
            await session.refresh(asset)
    except BaseException:
        # Refused (413) or failed: the upload must not outlive its intent.
        try:
            await objects.abort_upload(key, upload_id)
        except Exception:  # noqa: BLE001 - the lifecycle rule aborts it later
            log.warning("abort_upload_failed", key=key, exc_info=True)
        raise
    urls, expire_at = await objects.part_urls(key, upload_id, part_count)
    return UploadTicket(asset, urls, expire_at, uploaded=[])


async def resume_upload(
    db: Database, objects: MediaObjects, caller: Caller, media_id: uuid.UUID
) -> UploadTicket:
    """Fresh part URLs for the caller's upload under way, and the parts S3 already holds
    (a client resumes with the rest)."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        asset = await permissions.own_asset(session, caller, media_id)
    _check_pending(asset)
    assert asset.upload_id is not None and asset.part_count is not None
    try:
        uploaded = await objects.uploaded_parts(asset.s3_key, asset.upload_id)
    except ClientError as exc:
        if not is_missing(exc):
            raise
        raise Conflict("The upload was completed or aborted; finalize it.") from exc
    urls, expire_at = await objects.part_urls(asset.s3_key, asset.upload_id, asset.part_count)
    return UploadTicket(asset, urls, expire_at, uploaded)


def _check_pending(asset: MediaAsset) -> None:
    if asset.status == MediaStatus.EXPIRED:
        raise Gone("The upload expired and was aborted; start a new one.")
    if asset.status != MediaStatus.PENDING_UPLOAD:
        raise Conflict(f"The upload is already finalized ({asset.status}).")


def _expected_sizes(asset: MediaAsset) -> dict[int, int]:
    assert asset.part_size is not None and asset.part_count is not None
    sizes = {n: asset.part_size for n in range(1, asset.part_count)}
    sizes[asset.part_count] = asset.size_bytes - asset.part_size * (asset.part_count - 1)
    return sizes


def _check_parts(
    asset: MediaAsset, claimed: list[tuple[int, str]], stored: list[StoredPart]
) -> list[StoredPart]:
    """The parts to complete the upload with, if the client's list, S3's parts and the
    intent agree; else ValidationFailed (a part missing or of the wrong size) or Conflict
    (an ETag S3 doesn't hold). Either way the upload stays as it is: resumable."""
    expected = _expected_sizes(asset)
    numbers = [n for n, _ in claimed]
    if len(set(numbers)) != len(numbers):
        raise ValidationFailed("Each part may be listed once.")
    unknown = sorted(set(numbers) - expected.keys())
    missing = sorted(expected.keys() - set(numbers))
    if unknown or missing:
        raise ValidationFailed(
            f"The upload has parts 1 to {asset.part_count}: list each with its ETag.",
            missing_parts=missing,
            unknown_parts=unknown,
        )
    held = {p.part_number: p for p in stored}
    not_uploaded = sorted(n for n in numbers if n not in held)
    if not_uploaded:
        raise ValidationFailed(
            "Some parts are not uploaded yet: PUT them, then finalize again.",
            missing_parts=not_uploaded,
        )
    wrong_etag = sorted(n for n, etag in claimed if normalize_etag(etag) != held[n].etag)
    if wrong_etag:
        raise Conflict(
            "Some ETags differ from what S3 holds for those parts: upload them again or "
            "send the ETags S3 returned.",
            mismatched_parts=wrong_etag,
        )
    wrong_size = sorted(n for n in numbers if held[n].size != expected[n])
    if wrong_size:
        raise ValidationFailed(
            f"Parts must be {asset.part_size} bytes each (the last one the rest, for "
            f"{asset.size_bytes} bytes in all): upload these again.",
            wrong_size_parts=wrong_size,
        )
    return [held[n] for n in sorted(numbers)]


async def finalize_upload(
    db: Database,
    objects: MediaObjects,
    caller: Caller,
    media_id: uuid.UUID,
    parts: list[tuple[int, str]],
) -> MediaAsset:
    """Complete the caller's upload in S3, check its size against the intent, turn its
    reservation into stored bytes (the quota checked again, atomically), move it to
    processing and write `media.process`, in one transaction. Finalizing again answers
    with the asset as it is."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        asset = await permissions.own_asset(session, caller, media_id)
    if asset.status in (MediaStatus.PROCESSING, MediaStatus.READY, MediaStatus.FAILED):
        return asset
    _check_pending(asset)
    assert asset.upload_id is not None
    try:
        stored = await objects.uploaded_parts(asset.s3_key, asset.upload_id)
    except ClientError as exc:
        if not is_missing(exc):
            raise
        # Completed by a finalize that did not commit, or one running now: its object
        # decides (below).
        stored = None
    if stored is not None:
        complete = _check_parts(asset, parts, stored)
        try:
            await objects.complete_upload(asset.s3_key, asset.upload_id, complete)
        except ClientError as exc:
            if not is_missing(exc):
                raise
    size = await objects.size_of(asset.s3_key)
    if size is None:
        raise Conflict("The upload is gone from storage; start a new one.")

    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        asset = await permissions.own_asset(session, caller, media_id, for_update=True)
        if asset.status != MediaStatus.PENDING_UPLOAD:  # a concurrent finalize won
            if asset.status == MediaStatus.EXPIRED:
                raise Gone("The upload expired and was aborted; start a new one.")
            return asset
        if size != asset.size_bytes:
            raise ValidationFailed(
                f"The upload holds {size} bytes, not the {asset.size_bytes} declared.",
                size_bytes=size,
                declared_size_bytes=asset.size_bytes,
            )
        limits = await _policy(session, objects.settings, caller.tenant_id)
        await quota.settle_upload(session, asset, size, quota=limits.storage_quota_bytes)
        asset.status = MediaStatus.PROCESSING
        asset.upload_id = None
        asset.finalized_at = datetime.now(UTC)
        add_event(
            session,
            tenant_id=caller.tenant_id,
            event_type="media.process",
            aggregate_type="media",
            aggregate_id=asset.id,
            payload={"media_id": str(asset.id)},
        )
    return asset


async def get_media(db: Database, caller: Caller, media_id: uuid.UUID) -> MediaAsset:
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        return await permissions.visible_asset(session, caller, media_id)


async def delete_media(
    db: Database, objects: MediaObjects, caller: Caller, media_id: uuid.UUID
) -> None:
    """Delete the asset, its objects in S3 and its comments, and give back its bytes.

    The S3 objects go while the asset's row is locked, before the row: a worker recording
    its renditions waits for the lock, then finds no asset and removes what it uploaded;
    a failure leaves the row, so deleting again finishes the job."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        asset = await permissions.visible_asset(session, caller, media_id, for_update=True)
        permissions.check_can_delete(caller, asset)
        if asset.upload_id:
            await objects.abort_upload(asset.s3_key, asset.upload_id)
        await objects.delete_prefix(object_prefix(asset.tenant_id, asset.id))
        await quota.free(session, asset)
        await session.delete(asset)


@dataclass(frozen=True)
class Playback:
    url: str
    content_type: str
    expires_at: datetime
    thumbnail_url: str | None


def _playable(asset: MediaAsset) -> tuple[str, str]:
    """(key, content type) of what clients play: the best video rendition, or for an
    image the original (images are not transcoded)."""
    videos = [r for r in asset.renditions if str(r.get("content_type", "")).startswith("video/")]
    if videos:
        best = max(videos, key=lambda r: int(r.get("height") or 0))
        return str(best["key"]), str(best["content_type"])
    return asset.s3_key, asset.content_type


async def playback(
    db: Database, objects: MediaObjects, caller: Caller, media_id: uuid.UUID
) -> Playback:
    """A short-lived presigned GET of the processed media, for whoever may see it."""
    asset = await get_media(db, caller, media_id)
    if asset.status != MediaStatus.READY:
        raise Conflict(f"The media is not ready ({asset.status}).", status_of_media=asset.status)
    key, content_type = _playable(asset)
    url, expires_at = await objects.download_url(
        key, content_type=content_type, filename=asset.filename
    )
    thumbnail = None
    if asset.thumbnail_key:
        thumbnail, _ = await objects.download_url(asset.thumbnail_key, content_type="image/jpeg")
    return Playback(url, content_type, expires_at, thumbnail)


async def add_comment(
    db: Database,
    caller: Caller,
    media_id: uuid.UUID,
    *,
    at_ms: int,
    body: str,
    drawing: list[dict[str, Any]] | None,
) -> MediaComment:
    """Comment at a moment of the media, and tell its owner (`media.comment.created`)."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        asset = await permissions.visible_asset(session, caller, media_id)
        if asset.status in (MediaStatus.PENDING_UPLOAD, MediaStatus.EXPIRED):
            raise Conflict("The media is not uploaded yet.")
        if asset.duration_ms is not None and at_ms > asset.duration_ms:
            raise ValidationFailed(
                f"at_ms is past the end of the video ({asset.duration_ms} ms).",
                duration_ms=asset.duration_ms,
            )
        comment = MediaComment(
            tenant_id=caller.tenant_id,
            media_id=media_id,
            author_id=caller.user_id,
            at_ms=at_ms,
            body=body,
            drawing=drawing,
        )
        session.add(comment)
        await session.flush()
        await session.refresh(comment)
        add_event(
            session,
            tenant_id=caller.tenant_id,
            event_type="media.comment.created",
            aggregate_type="media",
            aggregate_id=media_id,
            payload={
                "comment_id": str(comment.id),
                "media_id": str(media_id),
                "owner_id": str(asset.owner_id),
                "author_id": str(caller.user_id),
                "at_ms": at_ms,
            },
        )
    return comment


def _comment_cursor(comment: MediaComment) -> str:
    return f"{comment.at_ms}.{comment.id}"


def _parse_comment_cursor(cursor: str) -> tuple[int, uuid.UUID]:
    try:
        at, _, item = cursor.partition(".")
        return int(at), uuid.UUID(item)
    except ValueError as exc:
        raise ValidationFailed("The cursor is not valid.") from exc


async def list_comments(
    db: Database, caller: Caller, media_id: uuid.UUID, *, limit: int, cursor: str | None
) -> Page[MediaComment]:
    """The media's comments in the order of the video (at_ms, then id)."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        await permissions.visible_asset(session, caller, media_id)
        query = select(MediaComment).where(MediaComment.media_id == media_id)
        if cursor:
            at, after = _parse_comment_cursor(cursor)
            query = query.where(
                or_(
                    MediaComment.at_ms > at,
                    and_(MediaComment.at_ms == at, MediaComment.id > after),
                )
            )
        rows = (
            await session.scalars(
                query.order_by(MediaComment.at_ms, MediaComment.id).limit(limit + 1)
            )
        ).all()
    items = list(rows[:limit])
    return Page(items, _comment_cursor(items[-1]) if len(rows) > limit and items else None)
