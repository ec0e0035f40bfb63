import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.infra.columns import created_at, tenant_fk, uuid_pk
from app.infra.db import Base


class Notification(Base):
    """An in-app notification; `email_pending` marks one whose email is still to be sent."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index(
            "ix_notifications_tenant_id_user_id_created_at",
            "tenant_id",
            "user_id",
            "created_at",
            "id",
        ),
        Index("ix_notifications_tenant_id_event_id", "tenant_id", "event_id"),
        UniqueConstraint("tenant_id", "event_id", "user_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE")
    )
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    kind: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    email_pending: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    read_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at()
