"""DDL helpers every migration uses for tenant-owned tables.

Role names come from settings so that the same migrations run in dev, CI and production.
"""

from alembic import op
from sqlalchemy.sql import quoted_name

from app.settings import get_settings

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
CURRENT_USER_ID = "NULLIF(current_setting('app.user_id', true), '')::uuid"


def _ident(name: str) -> str:
    # Identifiers come from our own code and settings; quote them anyway.
    return op.get_bind().dialect.identifier_preparer.quote(quoted_name(name, quote=True))


def runtime_role() -> str:
    return _ident(get_settings().db_runtime_role)


def relay_role() -> str:
    return _ident(get_settings().db_relay_role)


# A per-tenant database role (made by the Tenant operator) is pinned to its own tenant,
# whatever it SETs app.tenant_id or SET ROLEs to: session_user doesn't change with either.
PINNED_TENANT = (
    "COALESCE((SELECT r.tenant_id FROM tenant_db_roles r "
    "WHERE r.role_name = session_user), {column})"
)


def tenant_table(
    table: str, *, column: str = "tenant_id", privileges: str = "SELECT, INSERT, UPDATE, DELETE"
) -> None:
    """ENABLE + FORCE RLS on a tenant-owned table, the isolation policies, runtime grants."""
    t, c = _ident(table), _ident(column)
    op.execute(f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {t} "
        f"USING ({c} = {CURRENT_TENANT}) WITH CHECK ({c} = {CURRENT_TENANT})"
    )
    pinned = PINNED_TENANT.format(column=c)
    op.execute(
        f"CREATE POLICY tenant_role_pin ON {t} AS RESTRICTIVE "
        f"USING ({c} = {pinned}) WITH CHECK ({c} = {pinned})"
    )
    op.execute(f"GRANT {privileges} ON {t} TO {runtime_role()}")


def drop_tenant_table_policy(table: str) -> None:
    op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {_ident(table)}")
