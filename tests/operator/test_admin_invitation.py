"""The first ADMIN's invitation: mailed to adminEmail, and kept nowhere anyone else reads.

The attacker here holds what the tenant's DB credentials Secret gives: read access to it
through the Kubernetes API (kmock's emulator). The invitation must not be theirs to take.
"""

import base64
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import kmock
import pytest
from courtside_operator.reconcile import TenantReconciler
from courtside_operator.secrets import FileSecretStore, KubernetesSecretStore

from app.auth.security import OpaqueToken
from app.tenants.provisioning import tenant_id_for_slug
from courtside.local.devstack import free_port
from tests.factories import INVITATION_SUBJECT, mails_to, next_mail, token_in
from tests.k8s_emulator import ClusterEmulator
from tests.operator.conftest import make_spec
from tests.operator.test_reconcile import conditions, role_dsn

NAMESPACE = "courtside"
SECRETS = f"/api/v1/namespaces/{NAMESPACE}/secrets"
ACCEPT = "/auth/invitations/accept"


@pytest.fixture
async def cluster():
    async with ClusterEmulator() as emulator, kmock.Server(emulator) as server:
        emulator.serve("v1/secrets", "Secret", namespaced=True)
        yield str(server.url)


@pytest.fixture
def owner():
    return {
        "apiVersion": "courtside.dev/v1",
        "kind": "Tenant",
        "name": "club",
        "uid": str(uuid.uuid4()),
        "controller": True,
        "blockOwnerDeletion": True,
    }


async def read_secret(url: str, name: str) -> dict[str, str]:
    """What anyone allowed to `get` the Secret reads."""
    async with httpx.AsyncClient(base_url=url) as k8s:
        secret = (await k8s.get(f"{SECRETS}/{name}")).json()
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


async def invitation_row(conn, spec):
    return await conn.fetchrow(
        "SELECT token_hash, expires_at, accepted_at FROM invitations "
        "WHERE tenant_id = $1 AND email = $2",
        tenant_id_for_slug(spec.slug),
        spec.admin_email.lower(),
    )


async def test_a_reader_of_the_tenant_secret_cannot_take_the_admin_invitation(
    cluster, owner, reconciler, client, superuser_conn, settings
):
    spec = make_spec()
    store = KubernetesSecretStore(cluster, NAMESPACE, {})
    outcome = await reconciler.reconcile(spec, store, owner=owner)
    invited = conditions(outcome)["AdminInvited"]
    assert (invited["status"], invited["reason"]) == ("True", "InvitationSent")
    mailed = token_in(await next_mail(spec.admin_email, INVITATION_SUBJECT))

    secret = await read_secret(cluster, spec.secret_name)
    assert set(secret) == {"username", "password"}
    # No value is the mailed token, or any token of an invitation of this tenant.
    tenant_id = tenant_id_for_slug(spec.slug)
    digests = {
        r["token_hash"]
        for r in await superuser_conn.fetch(
            "SELECT token_hash FROM invitations WHERE tenant_id = $1", tenant_id
        )
    }
    for value in secret.values():
        assert mailed not in value
        assert OpaqueToken(tenant_id, value).digest(settings) not in digests
        taken = await client.post(ACCEPT, json={"token": value, "password": "attacker's choice"})
        assert taken.status_code in (401, 404), taken.text

    joined = await client.post(ACCEPT, json={"token": mailed, "password": "the admin's own"})
    assert joined.status_code == 201, joined.text
    assert joined.json()["role"] == "ADMIN"


async def test_a_token_an_older_operator_left_in_the_secret_is_removed_and_stops_working(
    cluster, owner, reconciler, client
):
    spec = make_spec()
    store = KubernetesSecretStore(cluster, NAMESPACE, {})
    first = await reconciler.reconcile(spec, store, owner=owner)
    leaked = token_in(await next_mail(spec.admin_email, INVITATION_SUBJECT))
    # As an older operator left things: the token in the Secret, no AdminInvited condition.
    await store.put(
        spec.secret_name,
        {**await store.get(spec.secret_name, owner), "admin-invitation-token": leaked},
        owner,
    )
    older = [c for c in first.status["conditions"] if c["type"] != "AdminInvited"]

    outcome = await reconciler.reconcile(spec, store, owner=owner, previous=older)
    assert outcome.ok
    assert f"secret {spec.secret_name}: admin-invitation-token removed" in " ".join(outcome.actions)
    assert set(await read_secret(cluster, spec.secret_name)) == {"username", "password"}
    renewed = token_in(await next_mail(spec.admin_email, INVITATION_SUBJECT, seen=1))
    assert renewed != leaked
    taken = await client.post(ACCEPT, json={"token": leaked, "password": "attacker's choice"})
    assert taken.status_code == 404, taken.text
    joined = await client.post(ACCEPT, json={"token": renewed, "password": "the admin's own"})
    assert joined.status_code == 201, joined.text


async def test_a_mail_smtp_refused_is_reported_then_sent_with_a_new_token(
    reconciler, store, settings, superuser_conn, client
):
    spec = make_spec()
    offline = TenantReconciler(settings.model_copy(update={"smtp_port": free_port()}))
    try:
        failed = await offline.reconcile(spec, store, generation=1)
    finally:
        await offline.close()
    # The platform's objects are made; only the mail is missing, and status says so.
    assert failed.ok
    state = conditions(failed)
    assert (state["AdminInvited"]["status"], state["AdminInvited"]["reason"]) == (
        "False",
        "MailNotSent",
    )
    assert "again" in state["AdminInvited"]["message"]
    assert state["Ready"]["status"] == state["DatabaseReady"]["status"] == "True"
    assert set(await store.get(spec.secret_name)) == {"username", "password"}
    assert await superuser_conn.fetchval(
        "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", spec.role_name
    )
    assert mails_to(spec.admin_email) == []
    undelivered = await invitation_row(superuser_conn, spec)

    sent = await reconciler.reconcile(
        spec, store, generation=1, previous=failed.status["conditions"]
    )
    invited = conditions(sent)["AdminInvited"]
    assert (invited["status"], invited["reason"]) == ("True", "InvitationSent")
    mailed = token_in(await next_mail(spec.admin_email, INVITATION_SUBJECT))
    rotated = await invitation_row(superuser_conn, spec)
    assert rotated["token_hash"] != undelivered["token_hash"]
    assert rotated["expires_at"] > undelivered["expires_at"]
    tenant_id = tenant_id_for_slug(spec.slug)
    assert OpaqueToken(tenant_id, mailed).digest(settings) == rotated["token_hash"]
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM invitations WHERE tenant_id = $1", tenant_id
        )
        == 1
    )

    # Sent and open: the next resync leaves it alone.
    again = await reconciler.reconcile(
        spec, store, generation=1, previous=sent.status["conditions"]
    )
    assert again.actions == []
    assert conditions(again)["AdminInvited"] == invited
    assert len(mails_to(spec.admin_email)) == 1
    joined = await client.post(ACCEPT, json={"token": mailed, "password": "the admin's own"})
    assert joined.status_code == 201, joined.text


async def test_an_expired_invitation_is_renewed_and_mailed_again(
    reconciler, store, superuser_conn, client
):
    spec = make_spec()
    first = await reconciler.reconcile(spec, store)
    old = token_in(await next_mail(spec.admin_email, INVITATION_SUBJECT))
    await superuser_conn.execute(
        "UPDATE invitations SET expires_at = $1 WHERE tenant_id = $2",
        datetime.now(UTC) - timedelta(minutes=1),
        tenant_id_for_slug(spec.slug),
    )
    outcome = await reconciler.reconcile(spec, store, previous=first.status["conditions"])
    assert f"admin {spec.admin_email} invitation renewed (expired)" in outcome.actions
    assert conditions(outcome)["AdminInvited"]["reason"] == "InvitationSent"
    new = token_in(await next_mail(spec.admin_email, INVITATION_SUBJECT, seen=1))
    assert (
        await client.post(ACCEPT, json={"token": old, "password": "a long password"})
    ).status_code == 404
    joined = await client.post(ACCEPT, json={"token": new, "password": "the admin's own"})
    assert joined.status_code == 201, joined.text


async def test_once_the_admin_has_joined_nothing_is_mailed(reconciler, store, client):
    spec = make_spec()
    first = await reconciler.reconcile(spec, store)
    token = token_in(await next_mail(spec.admin_email, INVITATION_SUBJECT))
    joined = await client.post(ACCEPT, json={"token": token, "password": "the admin's own"})
    assert joined.status_code == 201, joined.text
    # Even with no record of the mail: a member is never invited again.
    outcome = await reconciler.reconcile(spec, store)
    assert outcome.actions == []
    invited = conditions(outcome)["AdminInvited"]
    assert (invited["status"], invited["reason"]) == ("True", "AdminIsMember")
    assert len(mails_to(spec.admin_email)) == 1
    assert first.ok


class SecretWriteRefused(FileSecretStore):
    """A store whose writes fail, as an API server that refuses or can't be reached."""

    async def put(self, name, data, owner):
        raise RuntimeError("HTTP 503 from the API server")


async def test_a_failed_secret_write_is_not_ready_and_the_next_reconcile_recovers(
    reconciler, tmp_path, settings, superuser_conn, client
):
    spec = make_spec()
    refused = SecretWriteRefused(tmp_path / "secrets")
    failed = await reconciler.reconcile(spec, refused, generation=1)
    assert failed.ok is False and failed.retryable
    state = conditions(failed)
    assert (state["Ready"]["status"], state["Ready"]["reason"]) == ("False", "SecretUnavailable")
    assert "HTTP 503" in state["Ready"]["message"]
    # No invitation before the credentials are stored: nothing half-made to accept.
    assert state["AdminInvited"]["status"] == "Unknown"
    assert await invitation_row(superuser_conn, spec) is None
    assert mails_to(spec.admin_email) == []

    working = FileSecretStore(tmp_path / "secrets")
    recovered = await reconciler.reconcile(
        spec, working, generation=1, previous=failed.status["conditions"]
    )
    assert recovered.ok
    assert f"role {spec.role_name} password set" in recovered.actions
    state = conditions(recovered)
    assert state["Ready"]["status"] == "True"
    assert (state["AdminInvited"]["status"], state["AdminInvited"]["reason"]) == (
        "True",
        "InvitationSent",
    )
    # The Secret's password is the role's, and the mailed invitation is the admin's.
    secret = await working.get(spec.secret_name)
    conn = await asyncpg.connect(role_dsn(settings, secret["username"], secret["password"]))
    await conn.close()
    token = token_in(await next_mail(spec.admin_email, INVITATION_SUBJECT))
    joined = await client.post(ACCEPT, json={"token": token, "password": "the admin's own"})
    assert joined.status_code == 201, joined.text
