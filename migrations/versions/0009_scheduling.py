"""Scheduling: session types, availability (weekly rules and date overrides), what is
taken of a coach's time (blocks, under an exclusion constraint: no two of one coach ever
overlap), each athlete's place (holds and sessions), reminders sent, calendar feed tokens,
and the tenant's cancellation cutoff.

btree_gist lets the exclusion constraint compare uuids with = beside the range's &&; it
is a trusted extension, so the database's owner may create it. It goes into a schema of
its own: its hundreds of functions stay out of `public`, where every role could call
them (the index finds its operator class by type, not by search_path).

Revision ID: 0009_scheduling
Revises: 0008_media_upload_expiry
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from migrations.columns import UUID, created_column, id_column, tenant_column
from migrations.rls import tenant_table

revision: str = "0009_scheduling"
down_revision: str | None = "0008_media_upload_expiry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMESTAMP = sa.DateTime(timezone=True)


def _user(name: str, *, cascade: bool = True) -> sa.Column:
    return sa.Column(
        name,
        UUID,
        sa.ForeignKey("users.id", ondelete="CASCADE" if cascade else None),
        nullable=False,
    )


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS extensions")
    op.execute("REVOKE ALL ON SCHEMA extensions FROM PUBLIC")
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist SCHEMA extensions")
    op.add_column("tenants", sa.Column("booking_cancellation_cutoff_minutes", sa.Integer))

    op.create_table(
        "session_types",
        id_column(),
        tenant_column(),
        _user("coach_id"),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("duration_minutes", sa.Integer, nullable=False),
        sa.Column("buffer_before_minutes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("buffer_after_minutes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("location", sa.String(500)),
        sa.Column("capacity", sa.Integer, nullable=False, server_default="1"),
        sa.Column("min_notice_minutes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("booking_window_days", sa.Integer, nullable=False, server_default="60"),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.text("true")),
        created_column(),
        sa.Column("updated_at", _TIMESTAMP, nullable=False, server_default=sa.text("now()")),
        sa.CheckConstraint("duration_minutes BETWEEN 5 AND 1440", name="duration"),
        sa.CheckConstraint(
            "buffer_before_minutes BETWEEN 0 AND 720 AND buffer_after_minutes BETWEEN 0 AND 720",
            name="buffers",
        ),
        sa.CheckConstraint("capacity BETWEEN 1 AND 500", name="capacity"),
        sa.CheckConstraint("min_notice_minutes >= 0", name="min_notice"),
        sa.CheckConstraint("booking_window_days BETWEEN 1 AND 730", name="booking_window"),
    )
    op.create_index(
        "ix_session_types_tenant_id_coach_id", "session_types", ["tenant_id", "coach_id"]
    )
    tenant_table("session_types", tenant_readers=True)

    op.create_table(
        "availability_rules",
        id_column(),
        tenant_column(),
        _user("coach_id"),
        sa.Column("weekday", sa.SmallInteger, nullable=False),
        sa.Column("start_time", sa.Time, nullable=False),
        sa.Column("end_time", sa.Time, nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("effective_from", sa.Date),
        sa.Column("effective_until", sa.Date),
        created_column(),
        sa.CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
        sa.CheckConstraint("end_time > start_time", name="hours"),
        sa.CheckConstraint(
            "effective_until IS NULL OR effective_from IS NULL "
            "OR effective_until >= effective_from",
            name="effective",
        ),
    )
    op.create_index(
        "ix_availability_rules_tenant_id_coach_id", "availability_rules", ["tenant_id", "coach_id"]
    )
    tenant_table("availability_rules", tenant_readers=True)

    op.create_table(
        "availability_overrides",
        id_column(),
        tenant_column(),
        _user("coach_id"),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("start_time", sa.Time),
        sa.Column("end_time", sa.Time),
        sa.Column("time_zone", sa.String(64), nullable=False),
        created_column(),
        sa.CheckConstraint("kind IN ('unavailable', 'available')", name="kind"),
        sa.CheckConstraint(
            "(start_time IS NULL AND end_time IS NULL AND kind = 'unavailable') "
            "OR (start_time IS NOT NULL AND end_time IS NOT NULL AND end_time > start_time)",
            name="hours",
        ),
    )
    op.create_index(
        "ix_availability_overrides_tenant_id_coach_id_day",
        "availability_overrides",
        ["tenant_id", "coach_id", "day"],
    )
    tenant_table("availability_overrides", tenant_readers=True)

    op.create_table(
        "coach_blocks",
        id_column(),
        tenant_column(),
        _user("coach_id"),
        sa.Column(
            "session_type_id",
            UUID,
            sa.ForeignKey("session_types.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("starts_at", _TIMESTAMP, nullable=False),
        sa.Column("ends_at", _TIMESTAMP, nullable=False),
        sa.Column("blocked", pg.TSTZRANGE, nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        created_column(),
        sa.CheckConstraint("ends_at > starts_at", name="times"),
        sa.CheckConstraint("capacity >= 1", name="capacity"),
        pg.ExcludeConstraint(
            ("tenant_id", "="),
            ("coach_id", "="),
            ("blocked", "&&"),
            name="ex_coach_blocks_no_overlap",
            using="gist",
        ),
    )
    tenant_table("coach_blocks", tenant_readers=True)

    op.create_table(
        "coaching_sessions",
        id_column(),
        tenant_column(),
        sa.Column("block_id", UUID, sa.ForeignKey("coach_blocks.id", ondelete="SET NULL")),
        sa.Column("coach_id", UUID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("athlete_id", UUID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("session_type_id", UUID, sa.ForeignKey("session_types.id"), nullable=False),
        sa.Column("starts_at", _TIMESTAMP, nullable=False),
        sa.Column("ends_at", _TIMESTAMP, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("hold_expires_at", _TIMESTAMP),
        sa.Column("booked_by", UUID, nullable=False),
        sa.Column("cancelled_at", _TIMESTAMP),
        sa.Column("cancelled_by", UUID),
        sa.Column("cancel_reason", sa.Text),
        created_column(),
        sa.CheckConstraint(
            "status IN ('held', 'scheduled', 'cancelled', 'expired')", name="status"
        ),
        sa.CheckConstraint("ends_at > starts_at", name="times"),
        sa.CheckConstraint("status <> 'held' OR hold_expires_at IS NOT NULL", name="hold_expiry"),
    )
    for name, columns in {
        "ix_coaching_sessions_tenant_id_coach_id_starts_at": ["tenant_id", "coach_id", "starts_at"],
        "ix_coaching_sessions_tenant_id_athlete_id_starts_at": [
            "tenant_id",
            "athlete_id",
            "starts_at",
        ],
        "ix_coaching_sessions_tenant_id_block_id": ["tenant_id", "block_id"],
    }.items():
        op.create_index(name, "coaching_sessions", columns)
    tenant_table("coaching_sessions", tenant_readers=True)

    op.create_table(
        "session_reminders",
        tenant_column(),
        sa.Column(
            "session_id",
            UUID,
            sa.ForeignKey("coaching_sessions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("kind", sa.String(8), primary_key=True),
        created_column(),
    )
    tenant_table("session_reminders", privileges="SELECT, INSERT", tenant_readers=False)

    op.create_table(
        "calendar_feed_tokens",
        id_column(),
        tenant_column(),
        _user("user_id"),
        sa.Column("token_hash", sa.String(128), nullable=False),
        created_column(),
        sa.Column("revoked_at", _TIMESTAMP),
        sa.UniqueConstraint("tenant_id", "token_hash"),
    )
    op.create_index(
        "ix_calendar_feed_tokens_tenant_id_user_id",
        "calendar_feed_tokens",
        ["tenant_id", "user_id"],
    )
    tenant_table("calendar_feed_tokens", tenant_readers=False)


def downgrade() -> None:
    for table in (
        "calendar_feed_tokens",
        "session_reminders",
        "coaching_sessions",
        "coach_blocks",
        "availability_overrides",
        "availability_rules",
        "session_types",
    ):
        op.drop_table(table)
    op.drop_column("tenants", "booking_cancellation_cutoff_minutes")
