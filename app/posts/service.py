"""Posts, comments and the feed. Writes are units of work through the ORM, each with its
outbox event in the same transaction; the feed read runs on a raw asyncpg connection of the
read pool (hot path, docs/architecture.md point 8). Who may do what: app/posts/permissions.py.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import select

from app.audit import service as audit
from app.auth.caller import Caller
from app.events.outbox import add_event
from app.infra.db import Database, tenant_connection
from app.infra.errors import NotFound
from app.infra.pagination import Page, after_cursor, decode_cursor, encode_cursor, page_of
from app.infra.request_meta import RequestMeta
from app.posts import permissions
from app.posts.models import Comment, Post
from app.spaces.permissions import sees_every_space, visible_space

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
    read_pool: asyncpg.Pool,
    caller: Caller,
    *,
    space_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> FeedPage:
    """Newest posts first, keyset-paginated: one space (which the caller must see, else
    NotFound) or every space they are a member of. Rows come back JSON-ready."""
    after_at, after_id = decode_cursor(cursor) if cursor else (None, None)
    async with tenant_connection(read_pool, caller.tenant_id, caller.user_id) as conn:
        if space_id is not None:
            # The visibility rule of spaces/permissions.py, applied inside the query.
            every_space = sees_every_space(caller)
            rows = await conn.fetch(
                _SPACE_FEED, space_id, every_space, caller.user_id, limit + 1, after_at, after_id
            )
            if not rows and not await conn.fetchval(
                _SPACE_VISIBLE, space_id, every_space, caller.user_id
            ):
                raise NotFound("Space not found.")
        else:
            rows = await conn.fetch(_MEMBER_FEED, caller.user_id, limit + 1, after_at, after_id)
    items = [dict(r) for r in rows[:limit]]
    next_cursor = (
        encode_cursor(items[-1]["created_at"], items[-1]["id"]) if len(rows) > limit else None
    )
    return FeedPage(items, next_cursor)


async def create_post(
    db: Database,
    caller: Caller,
    *,
    space_id: uuid.UUID,
    body: str,
    media_ids: list[uuid.UUID],
) -> Post:
    """Create a post and its `post.created` event in one transaction. The author must see
    the space, and every media id must be an asset the author uploaded."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        await visible_space(session, caller, space_id)
        await permissions.check_can_attach_media(session, caller, media_ids)
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


async def get_post(
    db: Database,
    caller: Caller,
    post_id: uuid.UUID,
    *,
    comments_limit: int,
    comments_cursor: str | None,
) -> tuple[Post, Page[Comment]]:
    """The post and a page of its comments, oldest first."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        post, _ = await permissions.visible_post(session, caller, post_id)
        query = after_cursor(
            select(Comment).where(Comment.post_id == post_id),
            Comment.created_at,
            Comment.id,
            comments_cursor,
            oldest_first=True,
        )
        rows = list((await session.scalars(query.limit(comments_limit + 1))).all())
    return post, page_of(rows, comments_limit, lambda c: (c.created_at, c.id))


async def add_comment(db: Database, caller: Caller, post_id: uuid.UUID, body: str) -> Comment:
    """Comment on a post the caller may see, with its `comment.created` event."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        post, _ = await permissions.visible_post(session, caller, post_id)
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
    db: Database, caller: Caller, post_id: uuid.UUID, meta: RequestMeta | None
) -> None:
    """Soft delete, by the author, the space's coach or an ADMIN; audited."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        post, space = await permissions.visible_post(session, caller, post_id, for_update=True)
        permissions.check_can_delete_post(caller, post, space)
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
