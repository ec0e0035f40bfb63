import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, ForeignKeyConstraint, Index, PrimaryKeyConstraint, String, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.infra.columns import created_at, tenant_fk, uuid_pk
from app.infra.db import Base


class Space(Base):
    """Where a coach and their athletes share posts. Owned by one coach."""

    __tablename__ = "spaces"
    __table_args__ = (Index("ix_spaces_tenant_id_created_at", "tenant_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("users.id"))
    created_at: Mapped[datetime] = created_at()


class SpaceMember(Base):
    __tablename__ = "space_members"
    __table_args__ = (
        PrimaryKeyConstraint("tenant_id", "space_id", "user_id"),
        ForeignKeyConstraint(["space_id"], ["spaces.id"], ondelete="CASCADE"),
        # "Which spaces is this user in?" — the feed's first question.
        Index("ix_space_members_tenant_id_user_id", "tenant_id", "user_id", "space_id"),
    )

    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    space_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = created_at()
