"""What a coach offers: session types (booking options) and availability in their own
time zone (weekly rules and date overrides). Slots are computed from these in
app/scheduling/slots.py; what is taken lives in app/bookings."""

import uuid
from datetime import date, datetime, time

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Time,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.infra.columns import created_at, tenant_fk, uuid_pk
from app.infra.db import Base


def _user_fk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"))


class SessionType(Base):
    """A booking option of one coach: how long, what buffers around it, where, for how
    many athletes (1: private; more: a group clinic), how far ahead it may be booked."""

    __tablename__ = "session_types"
    __table_args__ = (
        Index("ix_session_types_tenant_id_coach_id", "tenant_id", "coach_id"),
        CheckConstraint("duration_minutes BETWEEN 5 AND 1440", name="duration"),
        CheckConstraint(
            "buffer_before_minutes BETWEEN 0 AND 720 AND buffer_after_minutes BETWEEN 0 AND 720",
            name="buffers",
        ),
        CheckConstraint("capacity BETWEEN 1 AND 500", name="capacity"),
        CheckConstraint("min_notice_minutes >= 0", name="min_notice"),
        CheckConstraint("booking_window_days BETWEEN 1 AND 730", name="booking_window"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    coach_id: Mapped[uuid.UUID] = _user_fk()
    title: Mapped[str] = mapped_column(String(200))
    duration_minutes: Mapped[int] = mapped_column(Integer)
    buffer_before_minutes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    buffer_after_minutes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    location: Mapped[str | None] = mapped_column(String(500))
    capacity: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    min_notice_minutes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    booking_window_days: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class AvailabilityRule(Base):
    """Weekly hours: on `weekday` (0 = Monday) from `start_time` to `end_time`, wall-clock
    time in `time_zone` (IANA), between the effective dates (inclusive; NULL: open)."""

    __tablename__ = "availability_rules"
    __table_args__ = (
        Index("ix_availability_rules_tenant_id_coach_id", "tenant_id", "coach_id"),
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
        CheckConstraint("end_time > start_time", name="hours"),
        CheckConstraint(
            "effective_until IS NULL OR effective_from IS NULL "
            "OR effective_until >= effective_from",
            name="effective",
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    coach_id: Mapped[uuid.UUID] = _user_fk()
    weekday: Mapped[int] = mapped_column(SmallInteger)
    start_time: Mapped[time] = mapped_column(Time)
    end_time: Mapped[time] = mapped_column(Time)
    time_zone: Mapped[str] = mapped_column(String(64))
    effective_from: Mapped[date | None] = mapped_column(Date)
    effective_until: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = created_at()


class OverrideKind:
    UNAVAILABLE = "unavailable"  # the day off (no hours), or these hours off
    AVAILABLE = "available"  # extra hours on that date


class AvailabilityOverride(Base):
    """One date's exception to the weekly rules, wall-clock time in `time_zone`: hours off
    (or the whole day, with no hours), or extra hours."""

    __tablename__ = "availability_overrides"
    __table_args__ = (
        Index("ix_availability_overrides_tenant_id_coach_id_day", "tenant_id", "coach_id", "day"),
        CheckConstraint("kind IN ('unavailable', 'available')", name="kind"),
        CheckConstraint(
            "(start_time IS NULL AND end_time IS NULL AND kind = 'unavailable') "
            "OR (start_time IS NOT NULL AND end_time IS NOT NULL AND end_time > start_time)",
            name="hours",
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    coach_id: Mapped[uuid.UUID] = _user_fk()
    day: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(16))
    start_time: Mapped[time | None] = mapped_column(Time)
    end_time: Mapped[time | None] = mapped_column(Time)
    time_zone: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at()
