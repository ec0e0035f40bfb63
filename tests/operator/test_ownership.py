"""What the operator will and won't take over: role names that can't collide, roles and
slugs that belong to someone else, and tenant roles from before the reader group."""

import uuid

import asyncpg
import pytest

from app.infra.db import asyncpg_dsn
from app.tenants.provisioning import tenant_id_for_slug
from tests.factories import SIGN_UP_SUBJECT, mails_to, next_mail, token_in, unique_email
from tests.operator.conftest import make_spec
from tests.operator.test_reconcile import conditions, role_dsn


async def _pinned_tenant_of(settings, store, spec) -> set[uuid.UUID]:
    secret = await store.get(spec.secret_name)
    conn = await asyncpg.connect(role_dsn(settings, secret["username"], secret["password"]))
    try:
        return {r["id"] for r in await conn.fetch("SELECT id FROM tenants")}
    finally:
        await conn.close()


async def test_long_slugs_sharing_a_prefix_get_distinct_roles(reconciler, store, settings):
    prefix = ("club-" + uuid.uuid4().hex * 2)[:56]  # as long as the old cut
    first = make_spec(slug=prefix + "-aaaaaa")
    second = make_spec(slug=prefix + "-bbbbbb")
    assert len(first.slug) == len(second.slug) == 63
    assert first.role_name != second.role_name
    assert max(len(first.role_name.encode()), len(second.role_name.encode())) <= 63
    previous = {}
    for spec in (first, second):
        outcome = await reconciler.reconcile(spec, store)
        assert outcome.ok
        previous[spec.slug] = outcome.status["conditions"]
    # Reconciling each again repoints nothing: each role stays with its own tenant.
    for spec in (first, second):
        again = await reconciler.reconcile(spec, store, previous=previous[spec.slug])
        assert again.ok and again.actions == []
    for spec in (first, second):
        assert await _pinned_tenant_of(settings, store, spec) == {tenant_id_for_slug(spec.slug)}


def test_short_slugs_keep_their_plain_role_name():
    assert make_spec(slug="riverside-tennis").role_name == "tenant_riverside_tennis"


async def test_a_role_mapped_to_another_tenant_is_not_taken_over(reconciler, store, superuser_conn):
    owner_spec = make_spec()
    await reconciler.reconcile(owner_spec, store)
    # Another Tenant whose role name comes out the same (as two long slugs used to).
    intruder = make_spec()
    await superuser_conn.execute(
        "UPDATE tenant_db_roles SET role_name = $1 WHERE tenant_id = $2",
        intruder.role_name,
        tenant_id_for_slug(owner_spec.slug),
    )
    await superuser_conn.execute(
        f'ALTER ROLE "{owner_spec.role_name}" RENAME TO "{intruder.role_name}"'
    )
    outcome = await reconciler.reconcile(intruder, store)
    assert outcome.ok is False
    ready = conditions(outcome)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "RoleConflict")
    assert str(tenant_id_for_slug(owner_spec.slug)) in ready["message"]
    mapped = await superuser_conn.fetchval(
        "SELECT tenant_id FROM tenant_db_roles WHERE role_name = $1", intruder.role_name
    )
    assert mapped == tenant_id_for_slug(owner_spec.slug)


async def test_a_role_the_operator_did_not_make_is_not_taken_over(
    reconciler, store, superuser_conn
):
    spec = make_spec()
    await superuser_conn.execute(f"CREATE ROLE \"{spec.role_name}\" LOGIN PASSWORD 'mine'")
    try:
        outcome = await reconciler.reconcile(spec, store)
        assert conditions(outcome)["Ready"]["reason"] == "RoleConflict"
        assert await store.get(spec.secret_name) is None
        mapped = await superuser_conn.fetchval(
            "SELECT count(*) FROM tenant_db_roles WHERE role_name = $1", spec.role_name
        )
        groups = await superuser_conn.fetchval(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
            "WHERE r.rolname = $1",
            spec.role_name,
        )
        assert (mapped, groups) == (0, 0)
    finally:
        await superuser_conn.execute(f'DROP ROLE "{spec.role_name}"')


async def test_a_tenant_role_in_the_runtime_role_is_moved_to_the_reader_group(
    reconciler, store, settings, superuser_conn
):
    """A role made before the reader group (as the owner made them then) is repaired."""
    spec = make_spec()
    await reconciler.reconcile(spec, store)
    owner = await asyncpg.connect(asyncpg_dsn(settings.migration_database_url))
    try:
        await owner.execute(f'REVOKE "{settings.db_tenant_reader_role}" FROM "{spec.role_name}"')
        await owner.execute(f'GRANT "{settings.db_runtime_role}" TO "{spec.role_name}"')
    finally:
        await owner.close()
    outcome = await reconciler.reconcile(spec, store)
    assert outcome.ok, outcome.problems
    assert f"membership in {settings.db_runtime_role} revoked" in outcome.drift
    assert "repaired drift" in conditions(outcome)["DatabaseReady"]["message"]
    groups = await superuser_conn.fetch(
        "SELECT DISTINCT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1",
        spec.role_name,
    )
    assert [g["rolname"] for g in groups] == [settings.db_tenant_reader_role]


async def test_a_direct_grant_to_a_tenant_role_is_revoked(reconciler, store, settings):
    spec = make_spec()
    await reconciler.reconcile(spec, store)
    owner = await asyncpg.connect(asyncpg_dsn(settings.migration_database_url))
    try:
        await owner.execute(f'GRANT UPDATE ON tenants TO "{spec.role_name}"')
        outcome = await reconciler.reconcile(spec, store)
        assert "privileges on tenants revoked" in outcome.drift
        assert not await owner.fetchval(
            "SELECT has_table_privilege($1, 'tenants', 'UPDATE')", spec.role_name
        )
    finally:
        await owner.close()


async def _self_register(client, slug: str) -> uuid.UUID:
    """Sign up through the API with a chosen slug, as anyone on the internet can."""
    email = unique_email("squatter")
    seen = len(mails_to(email))
    started = await client.post(
        "/auth/register",
        json={"email": email, "name": "Squatter", "tenant_name": "Riverside", "tenant_slug": slug},
    )
    assert started.status_code == 202, started.text
    token = token_in(await next_mail(email, SIGN_UP_SUBJECT, seen=seen))
    verified = await client.post(
        "/auth/register/verify", json={"token": token, "password": "a long password"}
    )
    assert verified.status_code == 201, verified.text
    return uuid.UUID(verified.json()["tenant_id"])


async def test_a_self_registered_slug_does_not_block_onboarding(
    reconciler, store, client, superuser_conn
):
    slug = f"riverside-{uuid.uuid4().hex[:8]}"
    squatter_tenant = await _self_register(client, slug)
    outcome = await reconciler.reconcile(make_spec(slug=slug), store)
    assert outcome.ok
    assert conditions(outcome)["Ready"]["status"] == "True"
    rows = await superuser_conn.fetch(
        "SELECT id, managed FROM tenants WHERE slug = $1 ORDER BY managed", slug
    )
    assert [(r["id"], r["managed"]) for r in rows] == [
        (squatter_tenant, False),
        (tenant_id_for_slug(slug), True),
    ]


async def test_a_slug_managed_under_another_id_is_reported(reconciler, store, superuser_conn):
    spec = make_spec()
    await superuser_conn.execute(
        "INSERT INTO tenants (id, slug, name, managed) VALUES ($1, $2, 'Elsewhere', true)",
        uuid.uuid4(),
        spec.slug,
    )
    outcome = await reconciler.reconcile(spec, store, generation=1)
    assert outcome.ok is False
    ready = conditions(outcome)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "SlugConflict")
    assert spec.slug in ready["message"]
    # Nothing was made for it.
    assert (
        await superuser_conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", spec.role_name)
        is None
    )
    assert await store.get(spec.secret_name) is None


@pytest.mark.parametrize("managed", [False, True])
async def test_a_slug_derived_row_is_adopted_as_managed(reconciler, store, superuser_conn, managed):
    """The seed (and operators before `managed` existed) made rows with the slug's id."""
    spec = make_spec()
    tenant_id = tenant_id_for_slug(spec.slug)
    await superuser_conn.execute(
        "INSERT INTO tenants (id, slug, name, managed) VALUES ($1, $2, 'Seeded', $3)",
        tenant_id,
        spec.slug,
        managed,
    )
    assert (await reconciler.reconcile(spec, store)).ok
    assert await superuser_conn.fetchval("SELECT managed FROM tenants WHERE id = $1", tenant_id)


async def test_a_role_under_the_old_cut_name_is_replaced(reconciler, store, superuser_conn):
    """Before names were hashed, a long slug's role was its first 56 characters."""
    spec = make_spec(slug=("club-" + uuid.uuid4().hex * 2)[:63])
    old = "tenant_" + spec.slug.replace("-", "_")[:56]
    assert old != spec.role_name
    await reconciler.reconcile(spec, store)
    await superuser_conn.execute(f'ALTER ROLE "{spec.role_name}" RENAME TO "{old}"')
    await superuser_conn.execute(
        "UPDATE tenant_db_roles SET role_name = $1 WHERE role_name = $2", old, spec.role_name
    )
    outcome = await reconciler.reconcile(spec, store)
    assert outcome.ok
    assert f"role {old} replaced by {spec.role_name}" in outcome.actions
    roles = await superuser_conn.fetch(
        "SELECT role_name FROM tenant_db_roles WHERE tenant_id = $1", tenant_id_for_slug(spec.slug)
    )
    assert [r["role_name"] for r in roles] == [spec.role_name]
    assert await superuser_conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", old) is None
    assert (await store.get(spec.secret_name))["username"] == spec.role_name


def tenant_object(spec) -> dict:
    """The ownerReference a Tenant object (a fresh metadata.uid) hands the reconciler."""
    return {
        "apiVersion": "courtside.dev/v1",
        "kind": "Tenant",
        "name": spec.slug,
        "uid": str(uuid.uuid4()),
        "controller": True,
        "blockOwnerDeletion": True,
    }


async def _role_can_log_in(conn, role) -> bool | None:
    return await conn.fetchval("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", role)


async def test_a_second_tenant_object_for_a_slug_is_refused_and_changes_nothing(
    reconciler, store, superuser_conn
):
    spec = make_spec()
    first = tenant_object(spec)
    assert (await reconciler.reconcile(spec, store, owner=first)).ok
    secret = await store.get(spec.secret_name)
    # Another object naming the same slug, with other wishes.
    second_spec = make_spec(slug=spec.slug, displayName="Takeover", suspended=True)
    outcome = await reconciler.reconcile(second_spec, store, owner=tenant_object(spec))
    ready = conditions(outcome)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "SlugClaimed")
    assert first["uid"] in ready["message"]
    assert outcome.retryable is False and outcome.actions == []
    row = await superuser_conn.fetchrow(
        "SELECT name, suspended, manifest_uid FROM tenants WHERE id = $1",
        tenant_id_for_slug(spec.slug),
    )
    assert (row["name"], row["suspended"], str(row["manifest_uid"])) == (
        "Club",
        False,
        first["uid"],
    )
    assert await _role_can_log_in(superuser_conn, spec.role_name) is True
    assert await store.get(spec.secret_name) == secret
    # The first object goes on reconciling as before.
    assert (await reconciler.reconcile(spec, store, owner=first)).ok


async def test_deleting_the_second_claimant_leaves_the_first_ones_tenant_alone(
    reconciler, store, superuser_conn, settings
):
    spec = make_spec(deletionPolicy="Delete")
    first = tenant_object(spec)
    await reconciler.reconcile(spec, store, owner=first)
    second = tenant_object(spec)
    await reconciler.reconcile(spec, store, owner=second)
    for policy in ("Delete", "Retain"):
        actions = await reconciler.finalize(
            make_spec(slug=spec.slug, deletionPolicy=policy), store, owner=second
        )
        assert actions == [
            f"tenant {spec.slug} is managed by Tenant {first['uid']}, not this one: its rows, "
            "objects and role are left alone"
        ]
    tenant_id = tenant_id_for_slug(spec.slug)
    assert await superuser_conn.fetchval(
        "SELECT NOT suspended FROM tenants WHERE id = $1", tenant_id
    )
    assert await _role_can_log_in(superuser_conn, spec.role_name) is True
    assert await _pinned_tenant_of(settings, store, spec) == {tenant_id}
    # The first object's own deletion still purges.
    actions = await reconciler.finalize(spec, store, owner=first)
    assert "tenant rows purged" in actions
    assert await superuser_conn.fetchval("SELECT 1 FROM tenants WHERE id = $1", tenant_id) is None


async def test_a_tenant_retained_by_its_deleted_object_is_taken_over_by_a_new_one(
    reconciler, store, superuser_conn
):
    spec = make_spec()
    old = tenant_object(spec)
    await reconciler.reconcile(spec, store, owner=old)
    await reconciler.finalize(spec, store, owner=old)  # Retain: suspended, claim released
    assert await _role_can_log_in(superuser_conn, spec.role_name) is False
    recreated = tenant_object(spec)
    outcome = await reconciler.reconcile(spec, store, owner=recreated)
    assert outcome.ok, outcome.status
    assert f"tenant row claimed by Tenant {recreated['uid']}" in outcome.actions
    assert await _role_can_log_in(superuser_conn, spec.role_name) is True
    assert (
        str(
            await superuser_conn.fetchval(
                "SELECT manifest_uid FROM tenants WHERE id = $1", tenant_id_for_slug(spec.slug)
            )
        )
        == recreated["uid"]
    )


async def test_two_objects_claiming_a_new_slug_at_once_get_one_owner(
    reconciler, store, superuser_conn
):
    import asyncio

    spec = make_spec()
    owners = [tenant_object(spec), tenant_object(spec)]
    outcomes = await asyncio.gather(
        *(reconciler.reconcile(spec, store, owner=owner) for owner in owners)
    )
    reasons = sorted(conditions(o)["Ready"]["reason"] for o in outcomes)
    assert reasons == ["Reconciled", "SlugClaimed"]
    winner = owners[[o.ok for o in outcomes].index(True)]
    assert (
        str(
            await superuser_conn.fetchval(
                "SELECT manifest_uid FROM tenants WHERE id = $1", tenant_id_for_slug(spec.slug)
            )
        )
        == winner["uid"]
    )
