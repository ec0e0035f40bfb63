import uuid

from sqlalchemy import String
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.infra.db import Base


class TenantDbRole(Base):
    """Maps a per-tenant PostgreSQL role to its tenant; RLS pins sessions of that role."""

    __tablename__ = "tenant_db_roles"

    role_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
