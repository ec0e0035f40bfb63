"""What is taken of a coach's time: blocks (one per private session or hold, one per
group-clinic instance), and each athlete's place in one (a hold or a booked session).

No double booking, by construction: coach_blocks carries an exclusion constraint over
(tenant, coach, the block's time with buffers), so two blocks of one coach can never
overlap, whatever the application does. A group clinic is one block whose places are
counted under its row lock against its capacity. A block whose places are all cancelled
or expired holds is deleted by the next booking that needs its time (app/bookings).
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import TSTZRANGE, UUID, ExcludeConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.infra.columns import created_at, tenant_fk, uuid_pk
from app.infra.db import Base


class CoachBlock(Base):
    __tablename__ = "coach_blocks"
    __table_args__ = (
        ExcludeConstraint(
            ("tenant_id", "="),
            ("coach_id", "="),
            ("blocked", "&&"),
            name="ex_coach_blocks_no_overlap",
            using="gist",
        ),
        CheckConstraint("ends_at > starts_at", name="times"),
        CheckConstraint("capacity >= 1", name="capacity"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    coach_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE")
    )
    session_type_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("session_types.id", ondelete="CASCADE")
    )
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    # [starts_at - buffer before, ends_at + buffer after): what no other block may touch.
    blocked: Mapped[Any] = mapped_column(TSTZRANGE)
    capacity: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_at()


class SessionStatus:
    HELD = "held"  # a place kept for a checkout until hold_expires_at
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # a hold not converted in time (set lazily; see hold_expires_at)


SESSION_STATUS_CHECK = "status IN ('held', 'scheduled', 'cancelled', 'expired')"


class CoachingSession(Base):
    """One athlete's place in a block: a hold, then a booked session (or cancelled).

    A hold past hold_expires_at counts as expired whatever its status says: nothing has
    to run for its place to be free again."""

    __tablename__ = "coaching_sessions"
    __table_args__ = (
        Index(
            "ix_coaching_sessions_tenant_id_coach_id_starts_at",
            "tenant_id",
            "coach_id",
            "starts_at",
        ),
        Index(
            "ix_coaching_sessions_tenant_id_athlete_id_starts_at",
            "tenant_id",
            "athlete_id",
            "starts_at",
        ),
        Index("ix_coaching_sessions_tenant_id_block_id", "tenant_id", "block_id"),
        # The scheduler's scan for due reminders, across tenants (migration 0010).
        Index(
            "ix_coaching_sessions_scheduled_starts_at",
            "starts_at",
            postgresql_where=text("status = 'scheduled'"),
        ),
        CheckConstraint(SESSION_STATUS_CHECK, name="status"),
        CheckConstraint("ends_at > starts_at", name="times"),
        CheckConstraint("status <> 'held' OR hold_expires_at IS NOT NULL", name="hold_expiry"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    block_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("coach_blocks.id", ondelete="SET NULL")
    )
    coach_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("users.id"))
    athlete_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("users.id"))
    session_type_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("session_types.id")
    )
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    hold_expires_at: Mapped[datetime | None]
    booked_by: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    cancelled_at: Mapped[datetime | None]
    cancelled_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at()


class SessionReminder(Base):
    """A reminder sent (its outbox event written) for one session: at most one of each
    kind, whatever restarts in between."""

    __tablename__ = "session_reminders"

    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    session_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("coaching_sessions.id", ondelete="CASCADE"),
        primary_key=True,
    )
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # "24h", "1h"
    created_at: Mapped[datetime] = created_at()


class CalendarFeedToken(Base):
    """A user's revocable read-only token for their calendar feed (only its HMAC kept)."""

    __tablename__ = "calendar_feed_tokens"
    __table_args__ = (
        Index("ix_calendar_feed_tokens_tenant_id_user_id", "tenant_id", "user_id"),
        UniqueConstraint("tenant_id", "token_hash"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE")
    )
    token_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = created_at()
    revoked_at: Mapped[datetime | None]
