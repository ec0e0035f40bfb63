"""The reconcile functions, called directly (no kopf), against real PostgreSQL, Redis, S3."""

import asyncio

import asyncpg
import pytest
from courtside_operator.reconcile import TenantReconciler
from sqlalchemy.engine import make_url

from app.tenants.provisioning import tenant_id_for_slug
from tests.factories import (
    INVITATION_SUBJECT,
    next_mail,
    register_tenant,
    token_in,
    unique_email,
)
from tests.operator.conftest import make_spec


def role_dsn(settings, role, password):
    return (
        make_url(settings.database_url)
        .set(drivername="postgresql", username=role, password=password)
        .render_as_string(hide_password=False)
    )


def conditions(outcome):
    return {c["type"]: c for c in outcome.status["conditions"]}


async def test_create_makes_a_ready_tenant_with_a_locked_down_role(
    reconciler, store, superuser_conn
):
    spec = make_spec(database={"connectionLimit": 7})
    outcome = await reconciler.reconcile(spec, store, generation=1)
    assert outcome.ok
    assert {t: c["status"] for t, c in conditions(outcome).items()} == {
        "DatabaseReady": "True",
        "QuotasApplied": "True",
        "RateLimitsApplied": "True",
        "Ready": "True",
        "AdminInvited": "True",
    }
    assert outcome.status["observedGeneration"] == 1
    role = await superuser_conn.fetchrow(
        "SELECT rolcanlogin, rolsuper, rolbypassrls, rolconnlimit FROM pg_roles WHERE rolname = $1",
        spec.role_name,
    )
    assert dict(role) == {
        "rolcanlogin": True,
        "rolsuper": False,
        "rolbypassrls": False,
        "rolconnlimit": 7,
    }
    secret = await store.get(spec.secret_name)
    assert secret["username"] == spec.role_name and len(secret["password"]) >= 24
    assert await next_mail(spec.admin_email, INVITATION_SUBJECT)


async def test_a_session_as_the_tenant_role_sees_only_its_tenant(
    reconciler, store, client, settings
):
    other = await register_tenant(client)  # someone else's data in the same tables
    spec = make_spec()
    await reconciler.reconcile(spec, store)
    secret = await store.get(spec.secret_name)
    conn = await asyncpg.connect(role_dsn(settings, secret["username"], secret["password"]))
    try:
        own = tenant_id_for_slug(spec.slug)
        assert {r["id"] for r in await conn.fetch("SELECT id FROM tenants")} == {own}
        # Neither pointing app.tenant_id elsewhere nor SET ROLE escapes the pin, and the
        # runtime role is not one it may become.
        await conn.execute(f"SET app.tenant_id = '{other.tenant_id}'")
        assert await conn.fetch("SELECT id FROM tenants") == []
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"SET ROLE {settings.db_runtime_role}")
        await conn.execute(f"SET ROLE {settings.db_tenant_reader_role}")
        assert await conn.fetch("SELECT id FROM tenant_memberships") == []
    finally:
        await conn.close()


async def test_applying_the_same_spec_again_does_nothing(reconciler, store, superuser_conn):
    spec = make_spec(rateLimits={"perUser": {"requests": 10}})
    first = await reconciler.reconcile(spec, store)
    assert first.actions
    previous = first.status["conditions"]
    for _ in range(9):
        again = await reconciler.reconcile(spec, store, previous=previous)
        assert again.actions == [] and again.drift == []
        previous = again.status["conditions"]
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM invitations WHERE tenant_id = $1", tenant_id_for_slug(spec.slug)
        )
        == 1
    )


async def test_a_changed_limit_is_enforced_by_the_api(reconciler, store, client, app):
    email = unique_email("admin")
    spec = make_spec(adminEmail=email)
    await reconciler.reconcile(spec, store)
    tenant_id = tenant_id_for_slug(spec.slug)
    token = token_in(await next_mail(spec.admin_email, INVITATION_SUBJECT))
    joined = await client.post(
        "/auth/invitations/accept", json={"token": token, "password": "a long password"}
    )
    assert joined.status_code == 201
    headers = {"Authorization": f"Bearer {joined.json()['access_token']}"}
    url = f"/tenants/{tenant_id}"
    assert [(await client.get(url, headers=headers)).status_code for _ in range(4)] == [200] * 4
    limited = make_spec(
        slug=spec.slug,
        adminEmail=email,
        rateLimits={"perTenant": {"requests": 1, "windowSeconds": 60}},
    )
    await reconciler.reconcile(limited, store)
    statuses = []
    deadline = asyncio.get_running_loop().time() + 10
    while 429 not in statuses and asyncio.get_running_loop().time() < deadline:
        statuses.append((await client.get(url, headers=headers)).status_code)
        await asyncio.sleep(0.05)
    assert 429 in statuses


async def test_a_manual_alter_role_is_reverted_and_reported(reconciler, store, superuser_conn):
    spec = make_spec()
    await reconciler.reconcile(spec, store)
    await superuser_conn.execute(f"ALTER ROLE {spec.role_name} CONNECTION LIMIT 500 NOLOGIN")
    await superuser_conn.execute(f"ALTER ROLE {spec.role_name} RESET app.tenant_id")
    outcome = await reconciler.reconcile(spec, store)
    assert outcome.ok and outcome.drift
    assert "repaired drift" in conditions(outcome)["DatabaseReady"]["message"]
    role = await superuser_conn.fetchrow(
        "SELECT rolcanlogin, rolconnlimit, (SELECT setconfig FROM pg_db_role_setting "
        "WHERE setrole = r.oid) AS settings FROM pg_roles r WHERE rolname = $1",
        spec.role_name,
    )
    assert (role["rolcanlogin"], role["rolconnlimit"]) == (True, 10)
    assert role["settings"] == [f"app.tenant_id={tenant_id_for_slug(spec.slug)}"]


async def test_drift_only_a_superuser_can_undo_is_reported(reconciler, store, superuser_conn):
    spec = make_spec()
    await reconciler.reconcile(spec, store)
    await superuser_conn.execute(f"ALTER ROLE {spec.role_name} BYPASSRLS")
    outcome = await reconciler.reconcile(spec, store)
    assert outcome.ok is False
    ready = conditions(outcome)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "DriftNotRepairable")
    assert "BYPASSRLS" in ready["message"]


async def test_suspension_refuses_the_api_and_disables_the_role(
    reconciler, store, client, superuser_conn
):
    admin = await register_tenant(client)
    slug = await superuser_conn.fetchval("SELECT slug FROM tenants WHERE id = $1", admin.tenant_id)
    # Take over a registered tenant by manifest: its id must be the slug's.
    spec = make_spec(slug=slug, suspended=True)
    if tenant_id_for_slug(slug) != admin.tenant_id:
        spec = make_spec(suspended=True)
        await reconciler.reconcile(make_spec(slug=spec.slug), store)
        tenant_id = tenant_id_for_slug(spec.slug)
        member = await add_member_by_manifest(client, store, spec)
    else:
        tenant_id, member = admin.tenant_id, admin
    outcome = await reconciler.reconcile(spec, store)
    assert conditions(outcome)["Ready"]["reason"] == "Suspended"
    assert (
        await superuser_conn.fetchval(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", spec.role_name
        )
        is False
    )
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        response = await client.get(f"/tenants/{tenant_id}", headers=member.headers)
        if response.status_code == 403 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert response.status_code == 403
    assert response.json()["type"].endswith("/tenant-suspended")


async def add_member_by_manifest(client, store, spec):
    from tests.factories import Account

    token = token_in(await next_mail(spec.admin_email, INVITATION_SUBJECT))
    response = await client.post(
        "/auth/invitations/accept", json={"token": token, "password": "a long password"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(
        spec.admin_email,
        "a long password",
        body["user_id"],
        body["tenant_id"],
        body["role"],
        body["access_token"],
        body["refresh_token"],
    )


async def test_retain_deletion_keeps_data_and_disables_the_role(reconciler, store, superuser_conn):
    spec = make_spec(deletionPolicy="Retain")
    await reconciler.reconcile(spec, store)
    actions = await reconciler.finalize(spec, store)
    assert f"role {spec.role_name} disabled" in actions
    tenant = await superuser_conn.fetchrow(
        "SELECT suspended FROM tenants WHERE id = $1", tenant_id_for_slug(spec.slug)
    )
    assert tenant["suspended"] is True
    assert (
        await superuser_conn.fetchval(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", spec.role_name
        )
        is False
    )


async def test_delete_deletion_purges_rows_objects_and_role(
    reconciler, store, superuser_conn, settings
):
    from app.infra import aws

    spec = make_spec(deletionPolicy="Delete")
    await reconciler.reconcile(spec, store)
    tenant_id = tenant_id_for_slug(spec.slug)
    async with aws.client(settings, "s3") as s3:
        for i in range(3):
            await s3.put_object(
                Bucket=settings.s3_bucket, Key=f"tenants/{tenant_id}/{i}", Body=b"x"
            )
        await s3.put_object(Bucket=settings.s3_bucket, Key="tenants/someone-else/keep", Body=b"x")
        actions = await reconciler.finalize(spec, store)
        left = await s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix="tenants/")
    keys = [o["Key"] for o in left.get("Contents", [])]
    assert "tenants/someone-else/keep" in keys
    assert not [k for k in keys if k.startswith(f"tenants/{tenant_id}/")]
    assert "3 S3 objects deleted" in actions
    assert (
        await superuser_conn.fetchval("SELECT count(*) FROM tenants WHERE id = $1", tenant_id) == 0
    )
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM invitations WHERE tenant_id = $1", tenant_id
        )
        == 0
    )
    assert (
        await superuser_conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", spec.role_name)
        is None
    )
    assert await store.get(spec.secret_name) is None


async def test_an_unreachable_database_is_reported_not_hidden(settings, store):
    from courtside.local.devstack import free_port

    dead = settings.model_copy(
        update={"migration_database_url": f"postgresql+asyncpg://x:y@127.0.0.1:{free_port()}/none"}
    )
    reconciler = TenantReconciler(dead)
    try:
        outcome = await reconciler.reconcile(make_spec(), store, generation=3)
    finally:
        await reconciler.close()
    assert outcome.ok is False
    state = conditions(outcome)
    assert state["DatabaseReady"]["status"] == "False"
    assert state["Ready"]["reason"] == "DatabaseUnreachable"
    with pytest.raises(OSError):
        await reconciler.finalize(make_spec(), store)


class RecordingProxy:
    """A TCP proxy in front of PostgreSQL that keeps every byte the client sends: what
    the server (and any statement log, or pg_stat_statements) could ever see."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.sent = bytearray()
        self.server: asyncio.Server | None = None

    async def _pipe(self, reader, writer, record: bool) -> None:
        try:
            while data := await reader.read(65536):
                if record:
                    self.sent += data
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _serve(self, client_reader, client_writer) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self.target)
        await asyncio.gather(
            self._pipe(client_reader, server_writer, record=True),
            self._pipe(server_reader, client_writer, record=False),
        )

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def __aexit__(self, *_) -> None:
        self.server.close()


async def test_role_passwords_reach_postgres_only_as_scram_verifiers(
    settings, store, superuser_conn
):
    url = make_url(settings.migration_database_url)
    proxy = RecordingProxy(url.host, url.port)
    async with proxy as port:
        through_proxy = settings.model_copy(
            update={
                "migration_database_url": url.set(host="127.0.0.1", port=port).render_as_string(
                    hide_password=False
                )
            }
        )
        reconciler = TenantReconciler(through_proxy)
        try:
            spec = make_spec()
            assert (await reconciler.reconcile(spec, store)).ok  # CREATE ROLE … PASSWORD
            created = (await store.get(spec.secret_name))["password"]
            (store.folder / f"{spec.secret_name}.json").unlink()  # lost: a new password
            again = await reconciler.reconcile(spec, store)  # ALTER ROLE … PASSWORD
            assert f"role {spec.role_name} password set" in again.actions
            altered = (await store.get(spec.secret_name))["password"]
        finally:
            await reconciler.close()
    assert altered != created
    assert b"CREATE ROLE" in proxy.sent and b"ALTER ROLE" in proxy.sent  # the proxy saw DDL
    for password in (created, altered):
        assert password.encode() not in proxy.sent
    verifier = await superuser_conn.fetchval(
        "SELECT rolpassword FROM pg_authid WHERE rolname = $1", spec.role_name
    )
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    assert verifier.encode() in proxy.sent  # what was sent is what is stored
    conn = await asyncpg.connect(role_dsn(settings, spec.role_name, altered))
    assert await conn.fetchval("SELECT current_user") == spec.role_name
    await conn.close()


async def test_createrole_given_by_a_superuser_is_taken_back(reconciler, store, superuser_conn):
    spec = make_spec()
    await reconciler.reconcile(spec, store)
    await superuser_conn.execute(f"ALTER ROLE {spec.role_name} CREATEROLE")
    outcome = await reconciler.reconcile(spec, store)
    assert outcome.ok, outcome.problems
    assert "role attributes (NOCREATEROLE)" in outcome.drift
    assert not await superuser_conn.fetchval(
        "SELECT rolcreaterole FROM pg_roles WHERE rolname = $1", spec.role_name
    )


@pytest.mark.parametrize("attribute", ["CREATEDB", "REPLICATION"])
async def test_attributes_only_a_superuser_can_take_back_are_reported(
    reconciler, store, superuser_conn, attribute
):
    """The owner role has neither (NOCREATEDB, not a superuser): it can't revoke them."""
    spec = make_spec()
    await reconciler.reconcile(spec, store)
    await superuser_conn.execute(f"ALTER ROLE {spec.role_name} {attribute}")
    outcome = await reconciler.reconcile(spec, store)
    ready = conditions(outcome)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "DriftNotRepairable")
    assert f"was given {attribute} by a superuser" in ready["message"]
    assert outcome.retryable is False  # the resync reports it until someone acts


async def test_a_membership_only_a_superuser_can_revoke_is_reported(
    reconciler, store, superuser_conn
):
    spec = make_spec()
    await reconciler.reconcile(spec, store)
    await superuser_conn.execute(f"GRANT pg_read_all_data TO {spec.role_name}")
    outcome = await reconciler.reconcile(spec, store)
    ready = conditions(outcome)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "DriftNotRepairable")
    assert "keeps membership in pg_read_all_data" in ready["message"]
    assert "membership in pg_read_all_data revoked" not in outcome.drift
