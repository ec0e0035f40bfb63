import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.infra.columns import created_at, tenant_fk, uuid_pk
from app.infra.db import Base


class MediaStatus(StrEnum):
    """An asset's life: uploaded by the client in parts, finalized, processed by the worker.

    pending_upload -> processing -> ready | failed; pending_upload -> expired (never
    finalized within MEDIA_UPLOAD_EXPIRY_HOURS: the scheduler aborts the upload).
    """

    PENDING_UPLOAD = "pending_upload"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"
    EXPIRED = "expired"


STATUS_CHECK = "status IN ('pending_upload', 'processing', 'ready', 'failed', 'expired')"


class MediaAsset(Base):
    """An uploaded file and what processing made of it. Posts reference assets of their own
    tenant only.

    Storage accounting: `reserved_bytes` is what this asset holds of the tenant's quota
    while it uploads (the declared size; 0 once finalized or expired), `stored_bytes` what
    its objects in S3 take (original and renditions). The tenant's totals in
    tenant_storage are kept equal to the sums of these two columns, in the same
    transactions that change them (app/media/quota.py).
    """

    __tablename__ = "media_assets"
    __table_args__ = (
        Index("ix_media_assets_tenant_id_owner_id", "tenant_id", "owner_id"),
        # The scheduler's scan for expired uploads, across tenants (migration 0008).
        Index(
            "ix_media_assets_pending_upload_expires_at",
            "upload_expires_at",
            postgresql_where=text("status = 'pending_upload'"),
        ),
        CheckConstraint(STATUS_CHECK, name="status"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    owner_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    status: Mapped[str] = mapped_column(
        String(16), default=MediaStatus.PENDING_UPLOAD, server_default="pending_upload"
    )
    filename: Mapped[str] = mapped_column(String(255), default="", server_default="")
    content_type: Mapped[str] = mapped_column(String(127))
    # Declared at the upload intent; the original's real size once finalized.
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Key of the original upload.
    s3_key: Mapped[str] = mapped_column(String(1024))
    # The S3 multipart upload, while pending_upload.
    upload_id: Mapped[str | None] = mapped_column(String(1024))
    part_size: Mapped[int | None] = mapped_column(BigInteger)
    part_count: Mapped[int | None] = mapped_column(Integer)
    upload_expires_at: Mapped[datetime | None]
    reserved_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # What ffprobe said of the original.
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    video_codec: Mapped[str | None] = mapped_column(String(32))
    audio_codec: Mapped[str | None] = mapped_column(String(32))
    # [{name, key, content_type, size_bytes, width, height, ...}], written when ready.
    renditions: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default="[]"
    )
    thumbnail_key: Mapped[str | None] = mapped_column(String(1024))
    # Why processing failed (status failed): a stable code and a human-readable reason.
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_reason: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = created_at()
    finalized_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]


class TenantStorage(Base):
    """A tenant's storage: bytes its objects take, and bytes reserved by uploads under way.

    One row a tenant, made on its first upload. Quota checks are one conditional UPDATE of
    this row, so concurrent reservations and finalizes of one tenant serialize on it.
    """

    __tablename__ = "tenant_storage"
    __table_args__ = (
        CheckConstraint("used_bytes >= 0", name="used_bytes"),
        CheckConstraint("reserved_bytes >= 0", name="reserved_bytes"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    reserved_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class MediaComment(Base):
    """A comment at a moment of a video (or on an image, at 0), with an optional drawing."""

    __tablename__ = "media_comments"
    __table_args__ = (
        Index(
            "ix_media_comments_tenant_id_media_id_at_ms",
            "tenant_id",
            "media_id",
            "at_ms",
            "id",
        ),
        CheckConstraint("at_ms >= 0", name="at_ms"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    media_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("media_assets.id", ondelete="CASCADE")
    )
    author_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("users.id"))
    at_ms: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    drawing: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB(none_as_null=True))
    created_at: Mapped[datetime] = created_at()
