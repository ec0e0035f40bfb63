import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.deps import CallerDep, DatabaseDep, MediaObjectsDep
from app.infra.schemas import PageOut
from app.media import service
from app.media.models import MediaAsset
from app.media.schemas import (
    FinalizeIn,
    MediaCommentIn,
    MediaCommentOut,
    MediaError,
    MediaOut,
    PlaybackUrlOut,
    RenditionOut,
    UploadedPartOut,
    UploadIntentIn,
    UploadIntentOut,
    UploadPartUrl,
    UploadStateOut,
)

router = APIRouter(prefix="/media", tags=["media"])


def _media_out(asset: MediaAsset) -> MediaOut:
    error = (
        MediaError(code=asset.error_code, reason=asset.error_reason or "")
        if asset.error_code
        else None
    )
    return MediaOut(
        id=asset.id,
        owner_id=asset.owner_id,
        status=asset.status,
        filename=asset.filename,
        content_type=asset.content_type,
        size_bytes=asset.size_bytes,
        duration_ms=asset.duration_ms,
        width=asset.width,
        height=asset.height,
        video_codec=asset.video_codec,
        audio_codec=asset.audio_codec,
        renditions=[RenditionOut.model_validate(r) for r in asset.renditions],
        has_thumbnail=asset.thumbnail_key is not None,
        error=error,
        created_at=asset.created_at,
        finalized_at=asset.finalized_at,
        processed_at=asset.processed_at,
        upload_expires_at=asset.upload_expires_at,
    )


def _intent_out(ticket: service.UploadTicket) -> UploadIntentOut:
    asset = ticket.asset
    assert asset.upload_id is not None and asset.part_size is not None
    assert asset.upload_expires_at is not None
    return UploadIntentOut(
        media_id=asset.id,
        upload_id=asset.upload_id,
        part_size=asset.part_size,
        parts=[UploadPartUrl(part_number=n, url=url) for n, url in ticket.part_urls],
        expires_at=ticket.urls_expire_at,
        upload_expires_at=asset.upload_expires_at,
    )


@router.post("/upload-intent", status_code=status.HTTP_201_CREATED, response_model=UploadIntentOut)
async def upload_intent(
    body: UploadIntentIn, caller: CallerDep, db: DatabaseDep, objects: MediaObjectsDep
) -> UploadIntentOut:
    """Start an upload: PUT each part's bytes to its presigned URL, keep each response's
    ETag header, then finalize. Reserves `size_bytes` of the tenant's storage quota."""
    ticket = await service.create_upload(
        db,
        objects,
        caller,
        filename=body.filename,
        content_type=body.content_type,
        size_bytes=body.size_bytes,
    )
    return _intent_out(ticket)


@router.get("/{media_id}/upload", response_model=UploadStateOut)
async def upload_state(
    media_id: uuid.UUID, caller: CallerDep, db: DatabaseDep, objects: MediaObjectsDep
) -> UploadStateOut:
    """Resume an upload: fresh part URLs, and the parts S3 already holds."""
    ticket = await service.resume_upload(db, objects, caller, media_id)
    return UploadStateOut(
        **_intent_out(ticket).model_dump(),
        uploaded_parts=[
            UploadedPartOut(part_number=p.part_number, etag=p.etag, size_bytes=p.size)
            for p in ticket.uploaded
        ],
    )


@router.post("/{media_id}/finalize", status_code=status.HTTP_202_ACCEPTED, response_model=MediaOut)
async def finalize(
    media_id: uuid.UUID,
    body: FinalizeIn,
    caller: CallerDep,
    db: DatabaseDep,
    objects: MediaObjectsDep,
) -> MediaOut:
    """Complete the upload and start processing. Finalizing again answers the same."""
    asset = await service.finalize_upload(
        db, objects, caller, media_id, [(p.part_number, p.etag) for p in body.parts]
    )
    return _media_out(asset)


@router.get("/{media_id}", response_model=MediaOut)
async def get_media(media_id: uuid.UUID, caller: CallerDep, db: DatabaseDep) -> MediaOut:
    return _media_out(await service.get_media(db, caller, media_id))


@router.delete("/{media_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_media(
    media_id: uuid.UUID, caller: CallerDep, db: DatabaseDep, objects: MediaObjectsDep
) -> Response:
    await service.delete_media(db, objects, caller, media_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{media_id}/playback-url", response_model=PlaybackUrlOut)
async def playback_url(
    media_id: uuid.UUID, caller: CallerDep, db: DatabaseDep, objects: MediaObjectsDep
) -> PlaybackUrlOut:
    """A short-lived URL of the processed media (409 until it is ready)."""
    playback = await service.playback(db, objects, caller, media_id)
    return PlaybackUrlOut(
        url=playback.url,
        content_type=playback.content_type,
        expires_at=playback.expires_at,
        thumbnail_url=playback.thumbnail_url,
    )


@router.post(
    "/{media_id}/comments", status_code=status.HTTP_201_CREATED, response_model=MediaCommentOut
)
async def add_comment(
    media_id: uuid.UUID, body: MediaCommentIn, caller: CallerDep, db: DatabaseDep
) -> MediaCommentOut:
    drawing = [shape.model_dump(mode="json") for shape in body.drawing] if body.drawing else None
    comment = await service.add_comment(
        db, caller, media_id, at_ms=body.at_ms, body=body.body, drawing=drawing
    )
    return MediaCommentOut.model_validate(comment)


@router.get("/{media_id}/comments", response_model=PageOut[MediaCommentOut])
async def list_comments(
    media_id: uuid.UUID,
    caller: CallerDep,
    db: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> PageOut[MediaCommentOut]:
    """Comments in the order of the video."""
    page = await service.list_comments(db, caller, media_id, limit=limit, cursor=cursor)
    return PageOut[MediaCommentOut](
        items=[MediaCommentOut.model_validate(c) for c in page.items],
        next_cursor=page.next_cursor,
    )
