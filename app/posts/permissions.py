"""Who may read, write and delete posts.

A post is visible exactly when its space is (app/spaces/permissions.py): to the space's
members and to an ADMIN; anyone else is told it does not exist. It is deleted by its author,
the space's coach or an ADMIN. It may carry only media its author uploaded.
"""

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.caller import Caller
from app.infra.errors import Forbidden, NotFound, ValidationFailed
from app.media.models import MediaAsset
from app.posts.models import Post
from app.spaces.models import Space
from app.spaces.permissions import can_manage, visible_space


async def visible_post(
    session: AsyncSession, caller: Caller, post_id: uuid.UUID, *, for_update: bool = False
) -> tuple[Post, Space]:
    """The live post and its space, if the caller may see the space; else NotFound. A step:
    runs in the transaction it is given."""
    query = select(Post).where(Post.id == post_id, Post.deleted_at.is_(None))
    if for_update:
        query = query.with_for_update()
    post = await session.scalar(query)
    if post is None:
        raise NotFound("Post not found.")
    try:
        space = await visible_space(session, caller, post.space_id)
    except NotFound:
        raise NotFound("Post not found.") from None
    return post, space


def check_can_delete_post(caller: Caller, post: Post, space: Space) -> None:
    if post.author_id != caller.user_id and not can_manage(caller, space):
        raise Forbidden("Only the author, the space's coach or an ADMIN can delete a post.")


async def check_can_attach_media(
    session: AsyncSession, caller: Caller, media_ids: list[uuid.UUID]
) -> None:
    """A post may carry only media its author uploaded. A step.

    Assets belong to their uploader, not to a space (media_assets has no space), so
    ownership is the only rule that keeps one member from publishing another's video into a
    space its owner never shared it with. Someone else's asset, in this tenant or another
    (which RLS hides anyway), is reported exactly like an id that does not exist, so the
    answer reveals nothing about other people's uploads.
    """
    if not media_ids:
        return
    found = set(
        (
            await session.scalars(
                select(MediaAsset.id).where(
                    MediaAsset.tenant_id == caller.tenant_id,
                    MediaAsset.owner_id == caller.user_id,
                    MediaAsset.id.in_(media_ids),
                )
            )
        ).all()
    )
    missing = [str(m) for m in dict.fromkeys(media_ids) if m not in found]
    if missing:
        raise ValidationFailed("Unknown media asset ids.", missing_media_ids=missing)
