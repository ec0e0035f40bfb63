import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from app.infra.schemas import PageOut, RequestBody, ResponseBody

Body = Annotated[str, Field(min_length=1, max_length=10_000)]


class PostCreateIn(RequestBody):
    space_id: uuid.UUID
    body: Body
    media_ids: Annotated[
        list[uuid.UUID], Field(max_length=20, description="Media assets you uploaded.")
    ] = []


class CommentCreateIn(RequestBody):
    body: Body


class FeedQuery(BaseModel):
    space_id: uuid.UUID | None = Field(
        None, description="One space's feed; all of yours if absent."
    )
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, max_length=200, description="`next_cursor` of the last page.")


class PostOut(ResponseBody):
    id: uuid.UUID
    space_id: uuid.UUID
    author_id: uuid.UUID
    body: str
    media_ids: list[uuid.UUID]
    created_at: datetime


class CommentOut(ResponseBody):
    id: uuid.UUID
    post_id: uuid.UUID
    author_id: uuid.UUID
    body: str
    created_at: datetime


class PostDetailOut(PostOut):
    comments: PageOut[CommentOut]
