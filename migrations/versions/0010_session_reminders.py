"""Session reminders: the scheduler finds sessions due a reminder without reading tenant
tables, as it finds stale uploads (0008).

The scheduler runs as the relay role, which may read no tenant table, and must stay so. It
asks `due_session_reminders(limit)`, an owner-defined function that returns only the
(tenant_id, session_id, kind) of scheduled sessions inside a reminder's window whose
reminder of that kind is not yet recorded, and then sends each in that tenant's
transaction as the runtime role (app/bookings/reminders.py), which records it in
session_reminders: once, whatever restarts in between.

The windows (the same in app/bookings/reminders.py): "24h" while the session starts in
(1 h, 24 h] from now, "1h" while it starts in (0, 1 h]. A session booked 30 minutes
ahead gets only the 1 h reminder, and none is sent once it has started.

coaching_sessions and session_reminders are FORCEd, so the owner is subject to their
policies too and outside a tenant's transaction sees no rows. As in 0008, one permissive
SELECT policy on each admits the owner (scheduled sessions only) while the session is the
relay's, that is only inside an owner-defined function the relay may call (session_user
survives SECURITY DEFINER and only a superuser can change it). The owner's own sessions
(migrations, the operator) gain nothing, and no other role is named by them.

Revision ID: 0010_session_reminders
Revises: 0009_scheduling
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.infra.settings import get_settings
from migrations.rls import literal, relay_role

revision: str = "0010_session_reminders"
down_revision: str | None = "0009_scheduling"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    relay_name = literal(get_settings().db_relay_role)
    op.execute(
        "CREATE POLICY session_reminder_scan ON coaching_sessions AS PERMISSIVE FOR SELECT "
        f"TO CURRENT_USER USING (session_user = {relay_name} AND status = 'scheduled')"
    )
    op.execute(
        "CREATE POLICY session_reminder_scan ON session_reminders AS PERMISSIVE FOR SELECT "
        f"TO CURRENT_USER USING (session_user = {relay_name})"
    )
    # The outer bounds (the widest window) let the scan use the partial index below; the
    # join picks each window's kind.
    op.execute(
        """
        CREATE FUNCTION due_session_reminders(p_limit integer)
        RETURNS TABLE (tenant_id uuid, session_id uuid, kind text)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
            SELECT s.tenant_id, s.id, w.kind
            FROM public.coaching_sessions s
            JOIN (VALUES ('24h', interval '1 hour', interval '24 hours'),
                         ('1h', interval '0', interval '1 hour')) AS w(kind, after, upto)
              ON s.starts_at > now() + w.after AND s.starts_at <= now() + w.upto
            WHERE s.status = 'scheduled'
              AND s.starts_at > now() AND s.starts_at <= now() + interval '24 hours'
              AND NOT EXISTS (
                  SELECT 1 FROM public.session_reminders r
                  WHERE r.session_id = s.id AND r.kind = w.kind)
            ORDER BY s.starts_at
            LIMIT greatest(p_limit, 0)
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION due_session_reminders(integer) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION due_session_reminders(integer) TO {relay_role()}")
    # The scan across tenants by start time: only scheduled sessions are in it.
    op.create_index(
        "ix_coaching_sessions_scheduled_starts_at",
        "coaching_sessions",
        ["starts_at"],
        postgresql_where=sa.text("status = 'scheduled'"),
    )


def downgrade() -> None:
    op.drop_index("ix_coaching_sessions_scheduled_starts_at", "coaching_sessions")
    op.execute("DROP FUNCTION IF EXISTS due_session_reminders(integer)")
    op.execute("DROP POLICY IF EXISTS session_reminder_scan ON session_reminders")
    op.execute("DROP POLICY IF EXISTS session_reminder_scan ON coaching_sessions")
