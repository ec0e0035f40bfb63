"""Media processing: what an uploaded asset's object in S3 says about it.

Transcoding with ffmpeg belongs to the media-upload feature, which will extend
`process_asset`.
"""

import uuid
from typing import Any

from botocore.exceptions import ClientError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.infra.errors import NotFound
from app.media.models import MediaAsset

# What S3 (and moto) answer to a HEAD on a key that does not exist.
_MISSING_OBJECT_CODES = ("404", "NoSuchKey", "NotFound")


async def process_asset(session: AsyncSession, s3: Any, bucket: str, media_id: uuid.UUID) -> str:
    """Inspect the asset's object in `bucket` and record what was found: its size and
    content type and status "ready", or status "failed" when the object is missing.
    Returns the status recorded.

    A step of the caller's transaction (the media worker applies it next to its
    processed_events marker, in the asset's tenant): takes that session, never begins or
    commits. `s3` is an S3 client. Raises NotFound if the tenant has no such asset.
    """
    asset = await session.scalar(
        select(MediaAsset).where(MediaAsset.id == media_id).with_for_update()
    )
    if asset is None:
        raise NotFound(f"media asset {media_id} not found in its tenant")
    try:
        head = await s3.head_object(Bucket=bucket, Key=asset.s3_key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in _MISSING_OBJECT_CODES:
            raise
        asset.status = "failed"
        return asset.status
    asset.size_bytes = int(head["ContentLength"])
    asset.content_type = head.get("ContentType") or asset.content_type
    asset.status = "ready"
    return asset.status
