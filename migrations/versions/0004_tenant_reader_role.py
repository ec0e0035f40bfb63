"""Per-tenant database roles get a read-only group role of their own.

Until now a tenant role was a member of the runtime role, and so could read and write
everything the API can: the global `users` table, `auth_find_user`, its own limits, the
audit log. From here on tenant roles are members of a NOLOGIN reader group that may only
SELECT the tenant-owned tables listed below (pinned to its tenant), and the pin's mapping
is read through an owner-defined function, so no other role needs to read tenant_db_roles.

Tenant slugs also get two namespaces: operator-managed tenants (`managed`) and
self-registered ones, each unique on its own, so that registering a slug first no longer
blocks the operator from onboarding it.

Revision ID: 0004_tenant_reader_role
Revises: 0003_event_pipeline
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.infra.settings import get_settings
from migrations.rls import (
    ensure_tenant_reader,
    literal,
    pin_tenant_roles,
    relay_role,
    runtime_role,
    tenant_reader_role,
)

revision: str = "0004_tenant_reader_role"
down_revision: str | None = "0003_event_pipeline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every tenant-owned table so far, and whether a tenant's own role may read it. Tokens,
# token hashes and the event pipeline's bookkeeping are not the tenant's to read.
TENANT_TABLES: dict[str, bool] = {
    "tenants": True,
    "tenant_memberships": True,
    "audit_logs": True,
    "media_assets": True,
    "spaces": True,
    "space_members": True,
    "posts": True,
    "comments": True,
    "notifications": True,
    "refresh_tokens": False,
    "invitations": False,
    "outbox_events": False,
    "processed_events": False,
}

# The pin as 0001-0003 wrote it, for downgrade.
_OLD_PIN = (
    "COALESCE((SELECT r.tenant_id FROM tenant_db_roles r WHERE r.role_name = session_user), {c})"
)


def _column(table: str) -> str:
    return "id" if table == "tenants" else "tenant_id"


def _move_tenant_roles(leave: str, join: str) -> None:
    """Every mapped tenant role leaves one group role for another."""
    op.execute(
        f"""
        DO $$
        DECLARE r record;
        BEGIN
            FOR r IN SELECT m.role_name FROM tenant_db_roles m
                     JOIN pg_roles t ON t.rolname = m.role_name LOOP
                EXECUTE format('REVOKE %I FROM %I', {literal(leave)}, r.role_name);
                EXECUTE format('GRANT %I TO %I', {literal(join)}, r.role_name);
            END LOOP;
        END $$
        """
    )


def upgrade() -> None:
    settings = get_settings()
    ensure_tenant_reader()
    reader = tenant_reader_role()
    for table, readable in TENANT_TABLES.items():
        pin_tenant_roles(table, _column(table))
        if readable:
            op.execute(f"GRANT SELECT ON {table} TO {reader}")
    op.execute(f"REVOKE ALL ON tenant_db_roles FROM {runtime_role()}, {relay_role()}")

    # Existing tenant roles leave the runtime role for the reader group now, not at the
    # operator's next resync (which also repairs this, as drift).
    _move_tenant_roles(settings.db_runtime_role, settings.db_tenant_reader_role)

    op.add_column(
        "tenants",
        sa.Column("managed", sa.Boolean, nullable=False, server_default=sa.text("false")),
    )
    op.drop_constraint("uq_tenants_slug", "tenants", type_="unique")
    op.create_index(
        "uq_tenants_slug_managed",
        "tenants",
        ["slug"],
        unique=True,
        postgresql_where=sa.text("managed"),
    )
    op.create_index(
        "uq_tenants_slug_self_registered",
        "tenants",
        ["slug"],
        unique=True,
        postgresql_where=sa.text("NOT managed"),
    )


def downgrade() -> None:
    settings = get_settings()
    op.drop_index("uq_tenants_slug_self_registered", "tenants")
    op.drop_index("uq_tenants_slug_managed", "tenants")
    op.create_unique_constraint("uq_tenants_slug", "tenants", ["slug"])
    op.drop_column("tenants", "managed")
    _move_tenant_roles(settings.db_tenant_reader_role, settings.db_runtime_role)
    op.execute(f"GRANT SELECT ON tenant_db_roles TO {runtime_role()}, {relay_role()}")
    reader = tenant_reader_role()
    for table in TENANT_TABLES:
        c = _column(table)
        pinned = _OLD_PIN.format(c=c)
        op.execute(f"DROP POLICY IF EXISTS tenant_role_pin ON {table}")
        op.execute(
            f"CREATE POLICY tenant_role_pin ON {table} AS RESTRICTIVE "
            f"USING ({c} = {pinned}) WITH CHECK ({c} = {pinned})"
        )
        op.execute(f"REVOKE ALL ON {table} FROM {reader}")
    op.execute("DROP FUNCTION IF EXISTS pinned_tenant()")
