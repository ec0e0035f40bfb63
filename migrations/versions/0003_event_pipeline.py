"""Event pipeline: in-app notifications, and NOTIFY when outbox events are written.

Revision ID: 0003_event_pipeline
Revises: 0002_spaces_posts
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from migrations.columns import UUID, created_column, id_column, tenant_column
from migrations.rls import tenant_table

revision: str = "0003_event_pipeline"
down_revision: str | None = "0002_spaces_posts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        id_column(),
        tenant_column(),
        sa.Column("user_id", UUID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event_id", UUID, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("data", pg.JSONB, nullable=False, server_default="{}"),
        sa.Column("email_pending", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("read_at", sa.DateTime(timezone=True)),
        created_column(),
        sa.UniqueConstraint("tenant_id", "event_id", "user_id"),
    )
    op.create_index(
        "ix_notifications_tenant_id_user_id_created_at",
        "notifications",
        ["tenant_id", "user_id", "created_at", "id"],
    )
    op.create_index(
        "ix_notifications_tenant_id_event_id", "notifications", ["tenant_id", "event_id"]
    )
    tenant_table("notifications")

    # Wake the relay as soon as events commit (NOTIFY is delivered at commit).
    op.execute(
        """
        CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('outbox_events', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_events_notify AFTER INSERT ON outbox_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_events_notify ON outbox_events")
    op.execute("DROP FUNCTION IF EXISTS outbox_notify()")
    op.drop_table("notifications")
