import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field

from app.schemas_common import PageOut, RequestBody, ResponseBody

Body = Annotated[str, Field(min_length=1, max_length=10_000)]


class PostCreateIn(RequestBody):
    space_id: uuid.UUID
    body: Body
    media_ids: Annotated[list[uuid.UUID], Field(max_length=20)] = []


class CommentCreateIn(RequestBody):
    body: Body


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
