"""DDL helpers every migration uses for tenant-owned tables.

Role names come from settings so that the same migrations run in dev, CI and production.
"""

from alembic import op
from sqlalchemy.sql import quoted_name

from app.infra.settings import get_settings

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
CURRENT_USER_ID = "NULLIF(current_setting('app.user_id', true), '')::uuid"


def _ident(name: str) -> str:
    # Identifiers come from our own code and settings; quote them anyway.
    return op.get_bind().dialect.identifier_preparer.quote(quoted_name(name, quote=True))


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def runtime_role() -> str:
    return _ident(get_settings().db_runtime_role)


def relay_role() -> str:
    return _ident(get_settings().db_relay_role)


def tenant_reader_role() -> str:
    return _ident(get_settings().db_tenant_reader_role)


# A per-tenant database role (made by the Tenant operator) is pinned to its own tenant,
# whatever it SETs app.tenant_id or SET ROLEs to: session_user doesn't change with either.
# The mapping is read by an owner-defined function, so no role the policy runs for needs to
# read tenant_db_roles; as a scalar subquery it is an InitPlan, evaluated once per query.
PINNED_TENANT = "COALESCE((SELECT pinned_tenant()), {column})"

# Nobody's tenant: what a member of the reader group without a mapping is pinned to.
NO_TENANT = "00000000-0000-0000-0000-000000000000"


def ensure_tenant_reader() -> None:
    """The NOLOGIN group of per-tenant roles, and `pinned_tenant()` (idempotent).

    `courtside migrate --bootstrap` creates the group beforehand and gives the owner ADMIN
    OPTION on it; created here (the owner has CREATEROLE) a database that was provisioned
    before the group existed still migrates.
    """
    reader = get_settings().db_tenant_reader_role
    op.execute(
        "DO $$ BEGIN "
        f"IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {literal(reader)}) THEN "
        f"CREATE ROLE {_ident(reader)} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE; "
        "END IF; END $$"
    )
    # A session's tenant if its login role is a tenant role. A member of the reader group
    # that has lost its mapping gets nobody's tenant rather than none (which would unpin
    # it); the owner's ADMIN OPTION membership, which grants nothing, doesn't count. Catalog
    # lookups by oid, not through pg_roles: this runs once in every query of every role.
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION pinned_tenant() RETURNS uuid
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
            SELECT COALESCE(
                (SELECT r.tenant_id FROM public.tenant_db_roles r
                 WHERE r.role_name = session_user),
                CASE WHEN EXISTS (
                    SELECT 1 FROM pg_auth_members m
                    WHERE m.roleid = to_regrole({literal(quote_ident(reader))})
                      AND m.member = to_regrole(quote_ident(session_user))
                      AND NOT m.admin_option
                ) THEN {literal(NO_TENANT)}::uuid END)
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION pinned_tenant() FROM PUBLIC")
    op.execute(
        "GRANT EXECUTE ON FUNCTION pinned_tenant() "
        f"TO {runtime_role()}, {relay_role()}, {_ident(reader)}"
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {_ident(reader)}")


def pin_tenant_roles(table: str, column: str = "tenant_id") -> None:
    """(Re)create the restrictive policy that pins per-tenant roles to their tenant."""
    t, c = _ident(table), _ident(column)
    pinned = PINNED_TENANT.format(column=c)
    op.execute(f"DROP POLICY IF EXISTS tenant_role_pin ON {t}")
    op.execute(
        f"CREATE POLICY tenant_role_pin ON {t} AS RESTRICTIVE "
        f"USING ({c} = {pinned}) WITH CHECK ({c} = {pinned})"
    )


def tenant_table(
    table: str,
    *,
    column: str = "tenant_id",
    privileges: str = "SELECT, INSERT, UPDATE, DELETE",
    tenant_readers: bool = False,
) -> None:
    """ENABLE + FORCE RLS on a tenant-owned table, the isolation policies, runtime grants.

    `tenant_readers`: whether per-tenant database roles may SELECT the table (their own
    tenant's rows). Say so for every new table; tokens, hashes and internal bookkeeping
    stay out. Migrations before 0004 call this without it and 0004 grants what they need.
    """
    ensure_tenant_reader()
    t, c = _ident(table), _ident(column)
    op.execute(f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {t} "
        f"USING ({c} = {CURRENT_TENANT}) WITH CHECK ({c} = {CURRENT_TENANT})"
    )
    pin_tenant_roles(table, column)
    op.execute(f"GRANT {privileges} ON {t} TO {runtime_role()}")
    if tenant_readers:
        op.execute(f"GRANT SELECT ON {t} TO {tenant_reader_role()}")


def drop_tenant_table_policy(table: str) -> None:
    op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {_ident(table)}")
