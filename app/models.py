"""Imports every domain's models so that Base.metadata knows all tables."""

from app.admin.models import AuditLog
from app.auth.models import RefreshToken, User
from app.db import Base
from app.events.models import OutboxEvent, ProcessedEvent
from app.tenants.models import Invitation, Tenant, TenantMembership

__all__ = [
    "AuditLog", "Base", "Invitation", "OutboxEvent", "ProcessedEvent", "RefreshToken",
    "Tenant", "TenantMembership", "User",
]
