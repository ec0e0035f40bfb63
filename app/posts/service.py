"""Posts, comments and the feed. Writes go through the ORM session with their outbox event
in the same transaction; the feed read runs on a raw asyncpg connection (hot path)."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth.caller import Caller
from app.events.outbox import add_event
from app.infra.errors import Forbidden, NotFound, ValidationFailed
from app.infra.pagination import Page, after_cursor, decode_cursor, encode_cursor, page_of
from app.infra.request_meta import RequestMeta
from app.media.models import MediaAsset
from app.posts.models import Comment, Post
from app.spaces.models import Space
from app.spaces.service import can_manage, visible_space
from app.tenants.models import Role

# One space's posts, newest first. The caller must be a member (or an ADMIN: $2); the RLS
# policy adds the tenant predicate that lets the planner use
# ix_posts_tenant_id_space_id_created_at.
_SPACE_FEED = """
SELECT p.id, p.space_id, p.author_id, p.body, p.media_ids, p.created_at FROM posts p
WHERE p.space_id = $1 AND p.deleted_at IS NULL
  AND ($2::boolean OR EXISTS (
        SELECT 1 FROM space_members m WHERE m.space_id = $1 AND m.user_id = $3))
  AND ($5::timestamptz IS NULL OR (p.created_at, p.id) < ($5::timestamptz, $6::uuid))
ORDER BY p.created_at DESC, p.id DESC
LIMIT $4
"""
# Every space the caller belongs to.
_MEMBER_FEED = """
SELECT p.id, p.space_id, p.author_id, p.body, p.media_ids, p.created_at FROM posts p
WHERE p.deleted_at IS NULL
  AND p.space_id IN (SELECT m.space_id FROM space_members m WHERE m.user_id = $1)
  AND ($3::timestamptz IS NULL OR (p.created_at, p.id) < ($3::timestamptz, $4::uuid))
ORDER BY p.created_at DESC, p.id DESC
LIMIT $2
"""
_SPACE_VISIBLE = """
SELECT 1 FROM spaces s WHERE s.id = $1
  AND ($2::boolean OR EXISTS (
        SELECT 1 FROM space_members m WHERE m.space_id = $1 AND m.user_id = $3))
"""


@dataclass(frozen=True)
class FeedPage:
    items: list[dict[str, Any]]
    next_cursor: str | None


async def read_feed(
    conn: asyncpg.Connection,
    caller: Caller,
    *,
    space_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> FeedPage:
    """Newest posts first, keyset-paginated; `conn` is already in the caller's tenant."""
    after_at, after_id = decode_cursor(cursor) if cursor else (None, None)
    if space_id is not None:
        is_admin = caller.role == Role.ADMIN
        rows = await conn.fetch(
            _SPACE_FEED, space_id, is_admin, caller.user_id, limit + 1, after_at, after_id
        )
        if not rows and not await conn.fetchval(_SPACE_VISIBLE, space_id, is_admin, caller.user_id):
            raise NotFound("Space not found.")
    else:
        rows = await conn.fetch(_MEMBER_FEED, caller.user_id, limit + 1, after_at, after_id)
    items = [dict(r) for r in rows[:limit]]
    next_cursor = (
        encode_cursor(items[-1]["created_at"], items[-1]["id"]) if len(rows) > limit else None
    )
    return FeedPage(items, next_cursor)


async def create_post(
    session: AsyncSession,
    caller: Caller,
    *,
    space_id: uuid.UUID,
    body: str,
    media_ids: list[uuid.UUID],
) -> Post:
    """Create a post and its `post.created` event in one transaction. The author must see
    the space, and every media id must be an asset the author uploaded (`_check_media`)."""
    async with session.begin():
        await visible_space(session, caller, space_id)
        await _check_media(session, caller, media_ids)
        post = Post(
            tenant_id=caller.tenant_id,
            space_id=space_id,
            author_id=caller.user_id,
            body=body,
            media_ids=list(dict.fromkeys(media_ids)),
        )
        session.add(post)
        await session.flush()
        add_event(
            session,
            tenant_id=caller.tenant_id,
            event_type="post.created",
            aggregate_type="post",
            aggregate_id=post.id,
            payload={
                "post_id": str(post.id),
                "space_id": str(space_id),
                "author_id": str(caller.user_id),
                "created_at": post.created_at.isoformat(),
            },
        )
    return post


async def _check_media(session: AsyncSession, caller: Caller, media_ids: list[uuid.UUID]) -> None:
    """A post may carry only media its author uploaded.

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


async def _visible_post(
    session: AsyncSession, caller: Caller, post_id: uuid.UUID, *, for_update: bool = False
) -> tuple[Post, Space]:
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


async def get_post(
    session: AsyncSession,
    caller: Caller,
    post_id: uuid.UUID,
    *,
    comments_limit: int,
    comments_cursor: str | None,
) -> tuple[Post, Page[Comment]]:
    """The post and a page of its comments, oldest first."""
    async with session.begin():
        post, _ = await _visible_post(session, caller, post_id)
        query = after_cursor(
            select(Comment).where(Comment.post_id == post_id),
            Comment.created_at,
            Comment.id,
            comments_cursor,
            oldest_first=True,
        )
        rows = list((await session.scalars(query.limit(comments_limit + 1))).all())
    return post, page_of(rows, comments_limit, lambda c: (c.created_at, c.id))


async def add_comment(
    session: AsyncSession, caller: Caller, post_id: uuid.UUID, body: str
) -> Comment:
    async with session.begin():
        post, _ = await _visible_post(session, caller, post_id)
        comment = Comment(
            tenant_id=caller.tenant_id, post_id=post_id, author_id=caller.user_id, body=body
        )
        session.add(comment)
        await session.flush()
        add_event(
            session,
            tenant_id=caller.tenant_id,
            event_type="comment.created",
            aggregate_type="post",
            aggregate_id=post_id,
            payload={
                "comment_id": str(comment.id),
                "post_id": str(post_id),
                "space_id": str(post.space_id),
                "author_id": str(caller.user_id),
                "post_author_id": str(post.author_id),
                "created_at": comment.created_at.isoformat(),
            },
        )
    return comment


async def delete_post(
    session: AsyncSession, caller: Caller, post_id: uuid.UUID, meta: RequestMeta | None
) -> None:
    """Soft delete, by the author, the space's coach or an ADMIN; audited."""
    async with session.begin():
        post, space = await _visible_post(session, caller, post_id, for_update=True)
        if post.author_id != caller.user_id and not can_manage(caller, space):
            raise Forbidden("Only the author, the space's coach or an ADMIN can delete a post.")
        post.deleted_at = datetime.now(UTC)
        post.deleted_by = caller.user_id
        audit.record_by(
            session,
            caller,
            action="post.deleted",
            meta=meta,
            target_type="post",
            target_id=post_id,
            details={"space_id": str(post.space_id), "author_id": str(post.author_id)},
        )
