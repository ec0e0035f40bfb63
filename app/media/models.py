import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.infra.columns import created_at, tenant_fk, uuid_pk
from app.infra.db import Base


class MediaAsset(Base):
    """An uploaded file. Posts reference assets of their own tenant only.

    The upload pipeline (presigned multipart upload, processing) fills the other columns.
    """

    __tablename__ = "media_assets"
    __table_args__ = (Index("ix_media_assets_tenant_id_owner_id", "tenant_id", "owner_id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    owner_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    content_type: Mapped[str] = mapped_column(String(127))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    s3_key: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = created_at()
