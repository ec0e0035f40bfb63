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


def tenant_table(table: str, *, column: str = "tenant_id",
                 privileges: str = "SELECT, INSERT, UPDATE, DELETE") -> None:
    """ENABLE + FORCE RLS on a tenant-owned table, one isolation policy, runtime grants."""
    t = _ident(table)
    op.execute(f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {t} "
        f"USING ({_ident(column)} = {CURRENT_TENANT}) "
        f"WITH CHECK ({_ident(column)} = {CURRENT_TENANT})"
    )
    op.execute(f"GRANT {privileges} ON {t} TO {runtime_role()}")


def drop_tenant_table_policy(table: str) -> None:
    op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {_ident(table)}")
