"""Tenant isolation at the SQL level, exercised through the runtime role only."""

import uuid

import asyncpg
import pytest

from app.infra.db import TENANT_CONTEXT_SQL, asyncpg_dsn
from tests.factories import add_member, register_tenant

# Tables that are deliberately not tenant-owned. Anything else in `public` must be.
GLOBAL_TABLES = {"alembic_version", "users", "tenant_db_roles"}


async def _as_tenant(conn: asyncpg.Connection, tenant_id: uuid.UUID | None) -> None:
    await conn.execute(TENANT_CONTEXT_SQL, str(tenant_id or ""), "")


@pytest.fixture
async def two_tenants(client):
    a = await register_tenant(client, "Club A")
    b = await register_tenant(client, "Club B")
    await add_member(client, b, "ATHLETE")
    return a, b


async def test_tenant_sees_only_its_own_rows(two_tenants, runtime_conn):
    a, b = two_tenants
    async with runtime_conn.transaction():
        await _as_tenant(runtime_conn, a.tenant_id)
        for table in ("tenants", "tenant_memberships", "refresh_tokens", "audit_logs"):
            column = "id" if table == "tenants" else "tenant_id"
            owners = {r[0] for r in await runtime_conn.fetch(f"SELECT {column} FROM {table}")}
            assert owners == {a.tenant_id}, table


async def test_tenant_cannot_insert_rows_for_another_tenant(two_tenants, runtime_conn):
    a, b = two_tenants
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with runtime_conn.transaction():
            await _as_tenant(runtime_conn, a.tenant_id)
            await runtime_conn.execute(
                "INSERT INTO tenant_memberships (tenant_id, user_id, role) "
                "VALUES ($1, $2, 'ADMIN')",
                b.tenant_id,
                a.user_id,
            )


async def test_tenant_cannot_move_its_rows_into_another_tenant(two_tenants, runtime_conn):
    a, b = two_tenants
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with runtime_conn.transaction():
            await _as_tenant(runtime_conn, a.tenant_id)
            await runtime_conn.execute("UPDATE tenant_memberships SET tenant_id = $1", b.tenant_id)


async def test_tenant_cannot_update_or_delete_another_tenants_rows(
    two_tenants, runtime_conn, superuser_conn
):
    a, b = two_tenants
    async with runtime_conn.transaction():
        await _as_tenant(runtime_conn, a.tenant_id)
        updated = await runtime_conn.execute(
            "UPDATE tenant_memberships SET role = 'ATHLETE' WHERE tenant_id = $1", b.tenant_id
        )
        deleted = await runtime_conn.execute(
            "DELETE FROM refresh_tokens WHERE tenant_id = $1", b.tenant_id
        )
        renamed = await runtime_conn.execute(
            "UPDATE tenants SET name = 'pwned' WHERE id = $1", b.tenant_id
        )
    assert (updated, deleted, renamed) == ("UPDATE 0", "DELETE 0", "UPDATE 0")
    # And B's rows are really untouched.
    roles = await superuser_conn.fetch(
        "SELECT role FROM tenant_memberships WHERE tenant_id = $1", b.tenant_id
    )
    assert sorted(r["role"] for r in roles) == ["ADMIN", "ATHLETE"]
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM refresh_tokens WHERE tenant_id = $1", b.tenant_id
        )
        == 2
    )
    assert (
        await superuser_conn.fetchval("SELECT name FROM tenants WHERE id = $1", b.tenant_id)
        == "Club B"
    )


async def test_no_tenant_set_sees_zero_rows_in_every_tenant_table(
    two_tenants, runtime_conn, superuser_conn
):
    tables = await _tenant_tables(superuser_conn)
    assert "tenant_memberships" in tables
    async with runtime_conn.transaction():
        for table in tables:
            assert await runtime_conn.fetchval(f'SELECT count(*) FROM "{table}"') == 0, table
        # A user is visible to no one without a tenant or an acting user.
        assert await runtime_conn.fetchval("SELECT count(*) FROM users") == 0


async def test_tenant_setting_is_transaction_local(two_tenants, runtime_conn):
    a, _ = two_tenants
    async with runtime_conn.transaction():
        await _as_tenant(runtime_conn, a.tenant_id)
        assert await runtime_conn.fetchval("SELECT count(*) FROM tenants") == 1
    # The next transaction on the same pooled connection starts with no tenant.
    assert await runtime_conn.fetchval("SELECT count(*) FROM tenants") == 0


async def test_users_of_other_tenants_are_invisible(two_tenants, runtime_conn):
    a, b = two_tenants
    async with runtime_conn.transaction():
        await _as_tenant(runtime_conn, a.tenant_id)
        emails = {r["email"] for r in await runtime_conn.fetch("SELECT email FROM users")}
    assert emails == {a.email}


async def test_runtime_role_is_not_privileged_and_owns_nothing(settings, superuser_conn):
    role = await superuser_conn.fetchrow(
        "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles "
        "WHERE rolname = $1",
        settings.db_runtime_role,
    )
    assert dict(role) == {
        "rolsuper": False,
        "rolbypassrls": False,
        "rolcreaterole": False,
        "rolcreatedb": False,
    }
    owned = await superuser_conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
        "WHERE r.rolname = $1",
        settings.db_runtime_role,
    )
    assert owned == []


async def _tenant_tables(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1"
    )
    return [r["relname"] for r in rows if r["relname"] not in GLOBAL_TABLES]


async def test_every_tenant_table_forces_rls_with_a_tenant_policy(superuser_conn):
    """Walks the catalog: a new table without FORCE RLS and a tenant policy fails here."""
    tables = await _tenant_tables(superuser_conn)
    assert len(tables) >= 7
    problems = []
    for table in tables:
        flags = await superuser_conn.fetchrow(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE relname = $1 AND relnamespace = 'public'::regnamespace",
            table,
        )
        if not (flags["relrowsecurity"] and flags["relforcerowsecurity"]):
            problems.append(f"{table}: RLS not enabled and forced")
        policy = await superuser_conn.fetchrow(
            "SELECT qual, with_check FROM pg_policies WHERE schemaname = 'public' "
            "AND tablename = $1 AND policyname = 'tenant_isolation'",
            table,
        )
        pin = await superuser_conn.fetchval(
            "SELECT permissive FROM pg_policies WHERE schemaname = 'public' "
            "AND tablename = $1 AND policyname = 'tenant_role_pin'",
            table,
        )
        if pin != "RESTRICTIVE":
            problems.append(f"{table}: no restrictive tenant_role_pin policy")
        pin_check = await superuser_conn.fetchrow(
            "SELECT qual, with_check FROM pg_policies WHERE schemaname = 'public' "
            "AND tablename = $1 AND policyname = 'tenant_role_pin'",
            table,
        )
        if pin_check is not None and not all(
            "pinned_tenant()" in (pin_check[k] or "") and "tenant_db_roles" not in pin_check[k]
            for k in ("qual", "with_check")
        ):
            problems.append(f"{table}: tenant_role_pin does not pin through pinned_tenant()")
        if policy is None:
            problems.append(f"{table}: no tenant_isolation policy")
        elif not all("app.tenant_id" in (policy[k] or "") for k in ("qual", "with_check")):
            problems.append(f"{table}: policy does not check app.tenant_id both ways")
        columns = {
            r["attname"]
            for r in await superuser_conn.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0",
                f"public.{table}",
            )
        }
        if table != "tenants" and "tenant_id" not in columns:
            problems.append(f"{table}: no tenant_id column")
    assert problems == []


async def test_tenant_table_indexes_lead_with_tenant_id(superuser_conn):
    rows = await superuser_conn.fetch(
        "SELECT t.relname AS table, i.relname AS index, a.attname AS first_column "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_class t ON t.oid = x.indrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = 'public' "
        "LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]"
    )
    tables = set(await _tenant_tables(superuser_conn)) - {"tenants"}
    # Global lookups by design: primary keys by id, the relay's cross-tenant queue index,
    # the scheduler's scans for expired uploads and due reminders, and which posts carry an
    # asset (a GIN index of uuids, unique across tenants; RLS adds the tenant).
    allowed = {
        "ix_outbox_events_pending",
        "ix_media_assets_pending_upload_expires_at",
        "ix_posts_media_ids",
        "ix_coaching_sessions_scheduled_starts_at",
    }
    offenders = [
        f"{r['table']}.{r['index']}"
        for r in rows
        if r["table"] in tables
        and r["first_column"] != "tenant_id"
        and not r["index"].startswith("pk_")
        and r["index"] not in allowed
    ]
    assert offenders == []


async def test_runtime_role_cannot_read_the_tenant_role_mapping(runtime_conn):
    # Which role belongs to which tenant is the owner's; the pin reads it through
    # pinned_tenant(), a function the owner defined.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await runtime_conn.fetch("SELECT role_name, tenant_id FROM tenant_db_roles")


async def test_relay_role_cannot_read_the_tenant_role_mapping(settings):
    conn = await asyncpg.connect(asyncpg_dsn(settings.relay_database_url))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT role_name, tenant_id FROM tenant_db_roles")
    finally:
        await conn.close()


async def test_the_pin_is_evaluated_once_per_query(two_tenants, runtime_conn):
    """An InitPlan, not a per-row subquery: the feed's index scan depends on it."""
    a, _ = two_tenants
    async with runtime_conn.transaction():
        await _as_tenant(runtime_conn, a.tenant_id)
        plan = "\n".join(
            r[0] for r in await runtime_conn.fetch("EXPLAIN SELECT * FROM tenant_memberships")
        )
    assert "InitPlan" in plan and "SubPlan" not in plan, plan
