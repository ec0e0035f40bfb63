"""A tenant's own database role, as the tenant holds it: the username and password from the
Secret the Tenant operator wrote, over a real connection. It reads its own tenant's data,
and nothing it does reaches another tenant, the global users, or anything it could write.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from alembic import command
from sqlalchemy.engine import make_url

from app.infra.dbadmin import alembic_config, drop_database
from app.tenants.provisioning import tenant_id_for_slug
from tests.factories import (
    INVITATION_SUBJECT,
    Account,
    add_member,
    create_club,
    create_post,
    create_space,
    next_mail,
    token_in,
)
from tests.operator.conftest import onboard_tenant, role_dsn

DENIED = asyncpg.InsufficientPrivilegeError

# What a tenant's role may read (its own rows of): everything tenant-owned except tokens,
# token hashes and the event pipeline's bookkeeping.
TENANT_READABLE = {
    "tenants",
    "tenant_memberships",
    "audit_logs",
    "media_assets",
    "media_comments",
    "tenant_storage",
    "session_types",
    "availability_rules",
    "availability_overrides",
    "coach_blocks",
    "coaching_sessions",
    "spaces",
    "space_members",
    "posts",
    "comments",
    "notifications",
}


@dataclass
class TenantRole:
    conn: asyncpg.Connection
    role: str
    tenant_id: uuid.UUID
    space_id: uuid.UUID
    post_id: uuid.UUID


@pytest.fixture
async def victim(client) -> dict:
    """Another tenant, with a space, a post and users who have password hashes."""
    club = await create_club(client)
    club["post"] = await create_post(client, club["coach"], club["space"])
    return club


@pytest.fixture
async def tenant_role(settings, client, tmp_path) -> AsyncIterator[TenantRole]:
    """A tenant onboarded by the operator, with a space and a post, and a connection as its
    own database role."""
    spec, secret = await onboard_tenant(settings, tmp_path)
    joined = await client.post(
        "/auth/invitations/accept",
        json={
            "token": token_in(await next_mail(spec.admin_email, INVITATION_SUBJECT)),
            "password": "a long password",
            "name": "Admin",
        },
    )
    assert joined.status_code == 201, joined.text
    body = joined.json()
    admin = Account(
        spec.admin_email,
        "a long password",
        uuid.UUID(body["user_id"]),
        uuid.UUID(body["tenant_id"]),
        body["role"],
        body["access_token"],
        body["refresh_token"],
    )
    coach = await add_member(client, admin, "COACH")
    space_id = await create_space(client, coach)
    post = await create_post(client, coach, space_id)
    conn = await asyncpg.connect(role_dsn(settings, secret["username"], secret["password"]))
    try:
        yield TenantRole(
            conn,
            secret["username"],
            tenant_id_for_slug(spec.slug),
            uuid.UUID(space_id),
            uuid.UUID(post["id"]),
        )
    finally:
        await conn.close()


async def test_tenant_role_reads_its_own_spaces_and_posts(tenant_role):
    conn = tenant_role.conn
    assert [r["id"] for r in await conn.fetch("SELECT id FROM spaces")] == [tenant_role.space_id]
    assert [r["id"] for r in await conn.fetch("SELECT id FROM posts")] == [tenant_role.post_id]
    assert [r["id"] for r in await conn.fetch("SELECT id FROM tenants")] == [tenant_role.tenant_id]


async def test_tenant_role_cannot_read_another_tenants_password_hash(tenant_role, victim):
    with pytest.raises(DENIED):
        await tenant_role.conn.fetchval(
            "SELECT password_hash FROM users WHERE id = $1", victim["admin"].user_id
        )


async def test_tenant_role_cannot_overwrite_another_tenants_password_hash(
    tenant_role, victim, superuser_conn
):
    admin = victim["admin"]
    before = await superuser_conn.fetchval(
        "SELECT password_hash FROM users WHERE id = $1", admin.user_id
    )
    with pytest.raises(DENIED):
        await tenant_role.conn.execute(
            "UPDATE users SET password_hash = 'chosen-by-attacker' WHERE id = $1", admin.user_id
        )
    after = await superuser_conn.fetchval(
        "SELECT password_hash FROM users WHERE id = $1", admin.user_id
    )
    assert after == before


async def test_tenant_role_cannot_look_users_up_by_email(tenant_role, victim):
    with pytest.raises(DENIED):
        await tenant_role.conn.fetch("SELECT * FROM auth_find_user($1)", victim["admin"].email)


async def test_acting_as_another_tenants_user_reveals_no_users(tenant_role, victim):
    conn = tenant_role.conn
    await conn.execute("SELECT set_config('app.user_id', $1, false)", str(victim["admin"].user_id))
    with pytest.raises(DENIED):
        await conn.fetch("SELECT id, email, password_hash FROM users")


async def test_tenant_role_cannot_change_its_own_limits(tenant_role):
    with pytest.raises(DENIED):
        await tenant_role.conn.execute(
            "UPDATE tenants SET rate_limits = NULL, storage_quota_bytes = 1e15, "
            "suspended = false WHERE id = $1",
            tenant_role.tenant_id,
        )


async def test_tenant_role_cannot_forge_audit_entries(tenant_role):
    with pytest.raises(DENIED):
        await tenant_role.conn.execute(
            "INSERT INTO audit_logs (tenant_id, action) VALUES ($1, 'member.role_changed')",
            tenant_role.tenant_id,
        )


async def test_tenant_role_cannot_suppress_event_effects(tenant_role):
    with pytest.raises(DENIED):
        await tenant_role.conn.execute(
            "INSERT INTO processed_events (tenant_id, consumer, event_id) "
            "VALUES ($1, 'notifications', $2)",
            tenant_role.tenant_id,
            uuid.uuid4(),
        )


async def test_tenant_role_cannot_list_the_tenant_role_mapping(tenant_role):
    with pytest.raises(DENIED):
        await tenant_role.conn.fetch("SELECT role_name, tenant_id FROM tenant_db_roles")


@pytest.mark.parametrize("setting", ["db_runtime_role", "db_relay_role"])
async def test_tenant_role_cannot_become_a_platform_role(tenant_role, settings, setting):
    with pytest.raises(DENIED):
        await tenant_role.conn.execute(f'SET ROLE "{getattr(settings, setting)}"')


async def test_tenant_role_cannot_become_the_owner(tenant_role, settings):
    owner = make_url(settings.migration_database_url).username
    with pytest.raises(DENIED):
        await tenant_role.conn.execute(f'SET ROLE "{owner}"')


@pytest.mark.parametrize("as_group", [False, True], ids=["own-role", "reader-group"])
async def test_pointing_app_tenant_id_elsewhere_shows_no_rows(
    tenant_role, victim, settings, as_group
):
    conn = tenant_role.conn
    if as_group:
        await conn.execute(f'SET ROLE "{settings.db_tenant_reader_role}"')
    await conn.execute(
        "SELECT set_config('app.tenant_id', $1, false)", str(victim["admin"].tenant_id)
    )
    for table in ("posts", "spaces", "tenant_memberships", "space_members", "tenants"):
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
    # Not even a filter on the other tenant's id finds its post.
    post_id = uuid.UUID(victim["post"]["id"])
    assert await conn.fetchval("SELECT count(*) FROM posts WHERE id = $1", post_id) == 0


@pytest.mark.parametrize(
    "table",
    [
        "refresh_tokens",
        "invitations",
        "outbox_events",
        "processed_events",
        "calendar_feed_tokens",
        "session_reminders",
    ],
)
async def test_credentials_and_internals_are_not_readable(tenant_role, table):
    with pytest.raises(DENIED):
        await tenant_role.conn.fetch(f"SELECT * FROM {table}")


async def test_reader_group_may_only_read_tenant_tables(superuser_conn, settings):
    """Walks the catalog: exactly SELECT on TENANT_READABLE, no other table privilege, no
    function but the pin's (and trigger functions, which can't be called)."""
    reader = settings.db_tenant_reader_role
    tables = await superuser_conn.fetch(
        "SELECT c.relname, "
        "  has_table_privilege($1, c.oid, 'SELECT') AS can_select, "
        "  has_table_privilege($1, c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER') "
        "    AS can_change "
        "FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace "
        "AND c.relkind IN ('r', 'p', 'v', 'm')",
        reader,
    )
    assert {r["relname"] for r in tables if r["can_select"]} == TENANT_READABLE
    assert [r["relname"] for r in tables if r["can_change"]] == []
    functions = await superuser_conn.fetch(
        "SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace "
        "AND p.prorettype <> 'trigger'::regtype AND has_function_privilege($1, p.oid, 'EXECUTE')",
        reader,
    )
    assert [r["proname"] for r in functions] == ["pinned_tenant"]
    groups = await superuser_conn.fetchval(
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
        "WHERE r.rolname = $1",
        reader,
    )
    assert groups == 0


async def test_tenant_role_is_a_member_of_the_reader_group_only(
    tenant_role, superuser_conn, settings
):
    groups = await superuser_conn.fetch(
        "SELECT DISTINCT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1",
        tenant_role.role,
    )
    assert [g["rolname"] for g in groups] == [settings.db_tenant_reader_role]


async def test_a_reader_without_a_mapping_sees_nothing(victim, settings, superuser_conn):
    """Should a tenant role ever lose its mapping, it is pinned to no tenant, not unpinned."""
    role, password = f"tenant_orphan_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await superuser_conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        await superuser_conn.execute(f'GRANT "{settings.db_tenant_reader_role}" TO {role}')
        conn = await asyncpg.connect(role_dsn(settings, role, password))
        try:
            await conn.execute(
                "SELECT set_config('app.tenant_id', $1, false)", str(victim["admin"].tenant_id)
            )
            assert await conn.fetchval("SELECT count(*) FROM posts") == 0
            assert await conn.fetchval("SELECT count(*) FROM tenants") == 0
        finally:
            await conn.close()
    finally:
        await superuser_conn.execute(f"DROP ROLE {role}")


def _catalog_state(dsn: str) -> dict:
    async def read() -> dict:
        conn = await asyncpg.connect(dsn)
        try:
            policies = await conn.fetch(
                "SELECT tablename, policyname, permissive, roles::text[], qual, with_check "
                "FROM pg_policies WHERE schemaname = 'public' ORDER BY 1, 2"
            )
            grants = await conn.fetch(
                "SELECT c.relname, a.privilege_type, g.rolname FROM pg_class c, "
                "aclexplode(c.relacl) a JOIN pg_roles g ON g.oid = a.grantee "
                "WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1, 2, 3"
            )
            indexes = await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tenants' ORDER BY 1"
            )
        finally:
            await conn.close()
        return {
            "policies": [tuple(r) for r in policies],
            "grants": [tuple(r) for r in grants],
            "indexes": [tuple(r) for r in indexes],
        }

    return asyncio.run(read())


def test_an_existing_database_is_migrated_to_the_reader_group(services, settings):
    """A database at 0003 whose tenant role is a member of the runtime role (as the operator
    made them then) ends, after 0004, where a fresh database does, the role out of it."""
    database = f"courtside_mig_{uuid.uuid4().hex[:8]}"
    admin = make_url(services.admin_url)
    role, password = f"tenant_legacy_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    owner_url = make_url(settings.migration_database_url).set(database=database)
    owner_dsn = owner_url.set(drivername="postgresql").render_as_string(hide_password=False)

    async def sql(dsn: str, *statements: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    admin_dsn = admin.render_as_string(hide_password=False)
    asyncio.run(sql(admin_dsn, f'CREATE DATABASE {database} OWNER "{owner_url.username}"'))
    try:
        config = alembic_config(owner_url.render_as_string(hide_password=False))
        command.upgrade(config, "head")
        command.downgrade(config, "0003_event_pipeline")  # the schema as it was before
        asyncio.run(
            sql(
                owner_dsn,
                f"CREATE ROLE {role} LOGIN PASSWORD '{password}'",
                f'GRANT "{settings.db_runtime_role}" TO {role}',
                f"INSERT INTO tenant_db_roles VALUES ('{role}', gen_random_uuid())",
            )
        )
        command.upgrade(config, "head")

        async def check() -> None:
            conn = await asyncpg.connect(
                owner_url.set(
                    drivername="postgresql", username=role, password=password
                ).render_as_string(hide_password=False)
            )
            try:
                for attack in ("SELECT * FROM users", "SELECT * FROM tenant_db_roles"):
                    with pytest.raises(DENIED):
                        await conn.fetch(attack)
                with pytest.raises(DENIED):
                    await conn.execute(f'SET ROLE "{settings.db_runtime_role}"')
            finally:
                await conn.close()

        asyncio.run(check())
        fresh = admin.set(drivername="postgresql", database=services.database).render_as_string(
            hide_password=False
        )
        migrated = admin.set(drivername="postgresql", database=database).render_as_string(
            hide_password=False
        )
        assert _catalog_state(migrated) == _catalog_state(fresh)
    finally:
        asyncio.run(drop_database(services.admin_url, database))
        asyncio.run(sql(admin_dsn, f"DROP ROLE IF EXISTS {role}"))
