"""Who may see, change and comment on a media asset.

An asset belongs to its uploader. It is visible to its owner, to an ADMIN, and to the
members of every space where a live post carries it (sharing a video is posting it).
Everyone else is told it does not exist (404), so ids confirm nothing. Only the owner
uploads and finalizes it; the owner or an ADMIN deletes it.
"""

import uuid

from sqlalchemy import Exists, and_, exists, select
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.caller import Caller
from app.infra.errors import Forbidden, NotFound
from app.media.models import MediaAsset
from app.posts.models import Post
from app.spaces.models import SpaceMember
from app.tenants.models import Role


def _shared_with(caller: Caller, media_id: uuid.UUID) -> Exists:
    """SQL: a live post in a space the caller is a member of carries the asset."""
    return exists().where(
        Post.media_ids.contains(array([media_id])),  # @>: uses the GIN index on media_ids
        Post.deleted_at.is_(None),
        exists().where(
            and_(SpaceMember.space_id == Post.space_id, SpaceMember.user_id == caller.user_id)
        ),
    )


async def visible_asset(
    session: AsyncSession, caller: Caller, media_id: uuid.UUID, *, for_update: bool = False
) -> MediaAsset:
    """The asset, if the caller may see it; else NotFound. A step."""
    query = select(MediaAsset).where(MediaAsset.id == media_id)
    if caller.role != Role.ADMIN:
        mine = MediaAsset.owner_id == caller.user_id
        query = query.where(mine | _shared_with(caller, media_id))
    if for_update:
        query = query.with_for_update(of=MediaAsset)
    asset = await session.scalar(query)
    if asset is None:
        raise NotFound("Media not found.")
    return asset


async def own_asset(
    session: AsyncSession, caller: Caller, media_id: uuid.UUID, *, for_update: bool = False
) -> MediaAsset:
    """The caller's own asset (the uploader's steps: resume, finalize); else NotFound."""
    query = select(MediaAsset).where(
        MediaAsset.id == media_id, MediaAsset.owner_id == caller.user_id
    )
    if for_update:
        query = query.with_for_update()
    asset = await session.scalar(query)
    if asset is None:
        raise NotFound("Media not found.")
    return asset


def check_can_delete(caller: Caller, asset: MediaAsset) -> None:
    if asset.owner_id != caller.user_id and caller.role != Role.ADMIN:
        raise Forbidden("Only the uploader or an ADMIN can delete media.")
