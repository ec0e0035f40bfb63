import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.infra.columns import created_at, tenant_fk, uuid_pk
from app.infra.db import Base


class Role(StrEnum):
    ADMIN = "ADMIN"
    COACH = "COACH"
    ATHLETE = "ATHLETE"
    SCHEDULER = "SCHEDULER"


ROLE_CHECK = "role IN ('ADMIN', 'COACH', 'ATHLETE', 'SCHEDULER')"


class Tenant(Base):
    """A coaching business. Its row is visible only inside its own tenant context."""

    __tablename__ = "tenants"
    # Slugs of operator-managed tenants and of self-registered ones are unique each in
    # their own namespace, so registering a slug first can't block the operator.
    __table_args__ = (
        Index("uq_tenants_slug_managed", "slug", unique=True, postgresql_where=text("managed")),
        Index(
            "uq_tenants_slug_self_registered",
            "slug",
            unique=True,
            postgresql_where=text("NOT managed"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    slug: Mapped[str] = mapped_column(String(63))
    # Onboarded by a Tenant manifest (the operator sets it); False for self-registration.
    managed: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    # The Tenant object (its metadata.uid) that manages this row; NULL: unclaimed.
    manifest_uid: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    name: Mapped[str] = mapped_column(String(200))
    suspended: Mapped[bool] = mapped_column(default=False, server_default="false")
    # Written by the Tenant operator; NULL means "use the platform defaults".
    rate_limits: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    max_upload_bytes: Mapped[int | None] = mapped_column(BigInteger)
    storage_quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # How long before a session athletes may still cancel it; NULL: the platform default.
    booking_cancellation_cutoff_minutes: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_at()


class TenantMembership(Base):
    __tablename__ = "tenant_memberships"
    __table_args__ = (
        UniqueConstraint("tenant_id", "user_id"),
        Index("ix_tenant_memberships_tenant_id_created_at", "tenant_id", "created_at", "id"),
        CheckConstraint(ROLE_CHECK, name="role"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = created_at()


class Invitation(Base):
    __tablename__ = "invitations"
    __table_args__ = (
        Index("ix_invitations_tenant_id_email", "tenant_id", "email"),
        UniqueConstraint("tenant_id", "token_hash"),
        CheckConstraint(ROLE_CHECK, name="role"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64))
    invited_by: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at()
