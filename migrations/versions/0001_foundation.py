"""Foundation: tenants, users, memberships, tokens, invitations, audit, outbox.

Revision ID: 0001_foundation
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from migrations.columns import NOW, UUID, created_column, id_column, tenant_column
from migrations.rls import CURRENT_USER_ID, relay_role, runtime_role, tenant_table

revision: str = "0001_foundation"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE_CHECK = "role IN ('ADMIN', 'COACH', 'ATHLETE', 'SCHEDULER')"


def upgrade() -> None:
    runtime = runtime_role()
    op.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {runtime}, {relay_role()}")

    # Which tenant each per-tenant database role belongs to (written by the Tenant operator).
    op.create_table(
        "tenant_db_roles",
        sa.Column("role_name", sa.String(63), primary_key=True),
        sa.Column("tenant_id", UUID, nullable=False, unique=True),
    )
    # Every role the policies run for must be able to read the pin mapping.
    op.execute(f"GRANT SELECT ON tenant_db_roles TO {runtime}, {relay_role()}")

    op.create_table(
        "tenants",
        id_column(),
        sa.Column("slug", sa.String(63), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("suspended", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("rate_limits", pg.JSONB),
        sa.Column("max_upload_bytes", sa.BigInteger),
        sa.Column("storage_quota_bytes", sa.BigInteger),
        created_column(),
    )
    tenant_table("tenants", column="id")

    op.create_table(
        "users",
        id_column(),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("default_tenant_id", UUID, sa.ForeignKey("tenants.id", ondelete="SET NULL")),
        sa.Column("email_notifications", sa.Boolean, nullable=False, server_default="true"),
        created_column(),
    )

    op.create_table(
        "tenant_memberships",
        id_column(),
        tenant_column(),
        sa.Column("user_id", UUID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        created_column(),
        sa.UniqueConstraint("tenant_id", "user_id"),
        sa.CheckConstraint(ROLE_CHECK, name="role"),
    )
    op.create_index(
        "ix_tenant_memberships_tenant_id_created_at",
        "tenant_memberships",
        ["tenant_id", "created_at", "id"],
    )
    tenant_table("tenant_memberships")

    # Users are global identities, not tenant-owned: a user is visible to themselves and to
    # the tenants they belong to. Not FORCEd, so the owner-defined lookup below can read by
    # email before anyone is authenticated.
    op.execute("ALTER TABLE users ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY users_visible ON users "
        f"USING (id = {CURRENT_USER_ID} OR EXISTS ("
        "  SELECT 1 FROM tenant_memberships m WHERE m.user_id = users.id)) "
        f"WITH CHECK (id = {CURRENT_USER_ID})"
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON users TO {runtime}")
    op.execute(
        """
        CREATE FUNCTION auth_find_user(p_email text)
        RETURNS TABLE (id uuid, password_hash text, default_tenant_id uuid)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT u.id, u.password_hash, u.default_tenant_id FROM users u
            WHERE u.email = lower(p_email)
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION auth_find_user(text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION auth_find_user(text) TO {runtime}")

    op.create_table(
        "refresh_tokens",
        id_column(),
        tenant_column(),
        sa.Column("user_id", UUID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("family_id", UUID, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        created_column(),
        sa.UniqueConstraint("tenant_id", "token_hash"),
    )
    op.create_index(
        "ix_refresh_tokens_tenant_id_family_id", "refresh_tokens", ["tenant_id", "family_id"]
    )
    op.create_index(
        "ix_refresh_tokens_tenant_id_user_id", "refresh_tokens", ["tenant_id", "user_id"]
    )
    tenant_table("refresh_tokens")

    op.create_table(
        "invitations",
        id_column(),
        tenant_column(),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("invited_by", UUID, sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True)),
        created_column(),
        sa.UniqueConstraint("tenant_id", "token_hash"),
        sa.CheckConstraint(ROLE_CHECK, name="role"),
    )
    op.create_index("ix_invitations_tenant_id_email", "invitations", ["tenant_id", "email"])
    tenant_table("invitations")

    op.create_table(
        "audit_logs",
        id_column(),
        tenant_column(),
        sa.Column("actor_user_id", UUID),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(64)),
        sa.Column("target_id", sa.String(64)),
        sa.Column("ip", pg.INET),
        sa.Column("request_id", sa.String(64)),
        sa.Column("details", pg.JSONB, nullable=False, server_default="{}"),
        created_column(),
    )
    op.create_index("ix_audit_logs_tenant_id_created_at", "audit_logs", ["tenant_id", "created_at"])
    # Append-only for the runtime role.
    tenant_table("audit_logs", privileges="SELECT, INSERT")

    op.create_table(
        "outbox_events",
        id_column(),
        tenant_column(),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("aggregate_type", sa.String(64), nullable=False),
        sa.Column("aggregate_id", sa.String(64), nullable=False),
        sa.Column("payload", pg.JSONB, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        created_column(),
    )
    op.create_index(
        "ix_outbox_events_tenant_id_created_at", "outbox_events", ["tenant_id", "created_at"]
    )
    op.create_index(
        "ix_outbox_events_pending",
        "outbox_events",
        ["available_at", "created_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    # The API only appends events; the relay role reads and updates across tenants.
    tenant_table("outbox_events", privileges="SELECT, INSERT")
    relay = relay_role()
    op.execute(
        f"CREATE POLICY outbox_relay ON outbox_events TO {relay} USING (true) WITH CHECK (true)"
    )
    op.execute(f"GRANT SELECT, UPDATE, DELETE ON outbox_events TO {relay}")

    op.create_table(
        "processed_events",
        tenant_column(),
        sa.Column("consumer", sa.String(64), nullable=False),
        sa.Column("event_id", UUID, nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "consumer", "event_id"),
    )
    tenant_table("processed_events", privileges="SELECT, INSERT")


def downgrade() -> None:
    for table in (
        "processed_events",
        "outbox_events",
        "audit_logs",
        "invitations",
        "refresh_tokens",
        "tenant_memberships",
    ):
        op.drop_table(table)
    op.execute("DROP FUNCTION IF EXISTS auth_find_user(text)")
    op.drop_table("users")
    op.drop_table("tenants")
    op.drop_table("tenant_db_roles")
