"""Imports every domain's models so that Base.metadata knows all tables."""

from app.audit.models import AuditLog
from app.auth.models import RefreshToken, User
from app.bookings.models import CalendarFeedToken, CoachBlock, CoachingSession, SessionReminder
from app.events.models import OutboxEvent, ProcessedEvent
from app.infra.db import Base
from app.media.models import MediaAsset, MediaComment, TenantStorage
from app.notifications.models import Notification
from app.posts.models import Comment, Post
from app.scheduling.models import AvailabilityOverride, AvailabilityRule, SessionType
from app.spaces.models import Space, SpaceMember
from app.tenants.db_roles import TenantDbRole
from app.tenants.models import Invitation, Tenant, TenantMembership

__all__ = [
    "AuditLog",
    "AvailabilityOverride",
    "AvailabilityRule",
    "CalendarFeedToken",
    "CoachBlock",
    "CoachingSession",
    "Base",
    "Comment",
    "Invitation",
    "MediaAsset",
    "MediaComment",
    "Notification",
    "OutboxEvent",
    "Post",
    "ProcessedEvent",
    "RefreshToken",
    "SessionReminder",
    "SessionType",
    "Space",
    "SpaceMember",
    "Tenant",
    "TenantDbRole",
    "TenantMembership",
    "TenantStorage",
    "User",
]
