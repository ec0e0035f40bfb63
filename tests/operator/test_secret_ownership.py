"""The operator's Secrets against kmock's Kubernetes emulator: a Secret it did not create
for this Tenant is neither read, overwritten nor deleted, and nothing is written for it."""

import base64
import uuid

import httpx
import kmock
import pytest
from courtside_operator.secrets import KubernetesSecretStore, SecretConflict

from tests.k8s_emulator import ClusterEmulator
from tests.operator.conftest import make_spec
from tests.operator.test_reconcile import conditions

NAMESPACE = "courtside"
SECRETS = f"/api/v1/namespaces/{NAMESPACE}/secrets"


@pytest.fixture
async def cluster():
    async with ClusterEmulator() as emulator, kmock.Server(emulator) as server:
        emulator.serve("v1/secrets", "Secret", namespaced=True)
        yield str(server.url)


def tenant_owner(name: str) -> dict:
    return {
        "apiVersion": "courtside.dev/v1",
        "kind": "Tenant",
        "name": name,
        "uid": str(uuid.uuid4()),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def planted(name: str, password: str, **metadata) -> dict:
    """A Secret someone else put where the operator will look."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/basic-auth",
        "metadata": {"name": name, "namespace": NAMESPACE, **metadata},
        "data": {"password": base64.b64encode(password.encode()).decode()},
    }


async def _secret(url: str, name: str) -> dict:
    async with httpx.AsyncClient(base_url=url) as k8s:
        return (await k8s.get(f"{SECRETS}/{name}")).json()


async def _plant(url: str, secret: dict) -> None:
    async with httpx.AsyncClient(base_url=url) as k8s:
        created = await k8s.post(SECRETS, json=secret)
        assert created.status_code in (200, 201), created.text


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        # Our label, but no owner reference to this Tenant: labels are anyone's to write.
        {"labels": {"app.kubernetes.io/managed-by": "courtside-operator"}},
        # Another Tenant's.
        {
            "labels": {"app.kubernetes.io/managed-by": "courtside-operator"},
            "ownerReferences": [tenant_owner("someone-else")],
        },
    ],
    ids=["unlabelled", "labelled-unowned", "another-tenants"],
)
async def test_a_planted_secret_is_not_adopted(cluster, reconciler, superuser_conn, metadata):
    spec = make_spec()
    await _plant(cluster, planted(spec.secret_name, "known-to-the-attacker", **metadata))
    before = await _secret(cluster, spec.secret_name)
    store = KubernetesSecretStore(cluster, NAMESPACE, {})
    outcome = await reconciler.reconcile(spec, store, owner=tenant_owner(spec.slug))
    assert outcome.ok is False
    ready = conditions(outcome)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "SecretConflict")
    assert spec.secret_name in ready["message"]
    # The Secret is untouched, and no role was given the planted password (nor any).
    assert await _secret(cluster, spec.secret_name) == before
    assert (
        await superuser_conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", spec.role_name)
        is None
    )


async def test_the_operators_own_secret_is_kept_and_reused(cluster, reconciler):
    spec = make_spec()
    owner = tenant_owner(spec.slug)
    store = KubernetesSecretStore(cluster, NAMESPACE, {})
    first = await reconciler.reconcile(spec, store, owner=owner)
    assert first.ok
    written = await _secret(cluster, spec.secret_name)
    assert written["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "courtside-operator"}
    assert written["metadata"]["ownerReferences"][0]["uid"] == owner["uid"]
    again = await reconciler.reconcile(
        spec, store, owner=owner, previous=first.status["conditions"]
    )
    assert again.ok and again.actions == []


async def test_a_planted_secret_is_not_overwritten_or_deleted(cluster):
    store = KubernetesSecretStore(cluster, NAMESPACE, {})
    owner = tenant_owner("club")
    await _plant(cluster, planted("tenant-club-db", "theirs"))
    with pytest.raises(SecretConflict):
        await store.put("tenant-club-db", {"username": "u", "password": "ours"}, owner)
    with pytest.raises(SecretConflict):
        await store.delete("tenant-club-db", owner)
    kept = await _secret(cluster, "tenant-club-db")
    assert base64.b64decode(kept["data"]["password"]).decode() == "theirs"
