import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator

from app.infra.schemas import RequestBody, ResponseBody

# S3's own limits: at most 10,000 parts, a single object at most 5 TiB.
MAX_PARTS = 10_000
MAX_OBJECT_BYTES = 5 * 1024**4


class UploadIntentIn(RequestBody):
    filename: Annotated[str, Field(min_length=1, max_length=255)]
    content_type: Annotated[
        str, Field(min_length=3, max_length=127, description="e.g. video/mp4, image/jpeg")
    ]
    size_bytes: Annotated[int, Field(gt=0, le=MAX_OBJECT_BYTES, description="The file's size.")]

    @field_validator("filename")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if any(ch in value for ch in "/\\\x00") or any(ord(ch) < 32 for ch in value):
            raise ValueError("a file name, without path separators or control characters")
        return value

    @field_validator("content_type")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class UploadPartUrl(BaseModel):
    part_number: int
    url: str


class UploadIntentOut(BaseModel):
    media_id: uuid.UUID
    upload_id: str
    part_size: int = Field(description="Bytes in every part but the last.")
    parts: list[UploadPartUrl] = Field(description="PUT each part's bytes to its URL.")
    expires_at: datetime = Field(description="When these URLs stop working.")
    upload_expires_at: datetime = Field(
        description="Finalize before this, or the upload is aborted and its bytes released."
    )


class UploadedPartOut(BaseModel):
    part_number: int
    etag: str
    size_bytes: int


class UploadStateOut(UploadIntentOut):
    uploaded_parts: list[UploadedPartOut] = Field(description="Parts S3 already holds.")


class UploadedPart(BaseModel):
    part_number: Annotated[int, Field(ge=1, le=MAX_PARTS)]
    etag: Annotated[str, Field(min_length=1, max_length=200)]


class FinalizeIn(RequestBody):
    parts: Annotated[list[UploadedPart], Field(min_length=1, max_length=MAX_PARTS)]


class RenditionOut(BaseModel):
    name: str
    content_type: str
    size_bytes: int
    width: int | None = None
    height: int | None = None


class MediaError(BaseModel):
    code: str
    reason: str


class MediaOut(ResponseBody):
    id: uuid.UUID
    owner_id: uuid.UUID
    status: Literal["pending_upload", "processing", "ready", "failed", "expired"]
    filename: str
    content_type: str
    size_bytes: int
    duration_ms: int | None
    width: int | None
    height: int | None
    video_codec: str | None
    audio_codec: str | None
    renditions: list[RenditionOut]
    has_thumbnail: bool
    error: MediaError | None
    created_at: datetime
    finalized_at: datetime | None
    processed_at: datetime | None
    upload_expires_at: datetime | None


class PlaybackUrlOut(BaseModel):
    url: str
    content_type: str
    expires_at: datetime
    thumbnail_url: str | None


# A drawing over the frame: a few shapes in coordinates relative to the frame (0..1).
Coordinate = Annotated[float, Field(ge=0, le=1)]
Color = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")]


class Point(BaseModel):
    x: Coordinate
    y: Coordinate


class _Shape(BaseModel):
    model_config = {"extra": "forbid"}
    color: Color = "#ff0000"
    width: Annotated[float, Field(gt=0, le=0.05)] = 0.005


class LineShape(_Shape):
    type: Literal["line", "arrow"]
    start: Point
    end: Point


class CircleShape(_Shape):
    type: Literal["circle"]
    center: Point
    radius: Annotated[float, Field(gt=0, le=1)]


class RectShape(_Shape):
    type: Literal["rect"]
    start: Point
    end: Point


class FreehandShape(_Shape):
    type: Literal["freehand"]
    points: Annotated[list[Point], Field(min_length=2, max_length=500)]


Shape = Annotated[LineShape | CircleShape | RectShape | FreehandShape, Field(discriminator="type")]


class MediaCommentIn(RequestBody):
    at_ms: Annotated[int, Field(ge=0, le=24 * 3600 * 1000, description="Moment of the video.")]
    body: Annotated[str, Field(min_length=1, max_length=5000)]
    drawing: Annotated[list[Shape] | None, Field(max_length=50)] = None

    @field_validator("body")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("text may not contain NUL characters")
        return value


class MediaCommentOut(ResponseBody):
    id: uuid.UUID
    media_id: uuid.UUID
    author_id: uuid.UUID
    at_ms: int
    body: str
    drawing: list[Shape] | None
    created_at: datetime
