"""The real kopf operator, in-process, against kmock's Kubernetes emulator, with real
PostgreSQL, Redis and S3."""

import asyncio
import base64
import contextlib
import threading
import uuid

import httpx
import kmock
import pytest

from app.media.models import MediaStatus
from app.tenants.provisioning import tenant_id_for_slug
from tests.k8s_emulator import ClusterEmulator, serve_operator_resources
from tests.operator.test_usage_status import add_media

pytestmark = pytest.mark.timeout(120)
TENANTS = "/apis/courtside.dev/v1/tenants"


@pytest.fixture
async def cluster():
    async with ClusterEmulator() as emulator, kmock.Server(emulator) as server:
        serve_operator_resources(emulator)
        emulator.serve("kopf.dev/v1/clusterkopfpeerings", "ClusterKopfPeering", namespaced=False)
        yield emulator, str(server.url)


@contextlib.asynccontextmanager
async def running_operator(**kwargs):
    """The real kopf operator with our handlers, in its own thread and event loop, as in
    production: kopf stops every task it didn't start when it exits, which would include
    the test's own. `kwargs` go to kopf.operator (default: cluster-wide, standalone)."""
    import courtside_operator.handlers  # noqa: F401 - registers the handlers
    import kopf

    stop, ready = threading.Event(), threading.Event()
    options = {"clusterwide": True, "standalone": True, **kwargs}
    thread = threading.Thread(
        target=asyncio.run,
        daemon=True,
        args=(kopf.operator(stop_flag=stop, ready_flag=ready, **options),),
    )
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 30)
        yield
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)
    assert not thread.is_alive()


@pytest.fixture
async def operator(cluster, settings, monkeypatch):
    from courtside_operator import handlers

    _, url = cluster
    monkeypatch.setattr(
        handlers, "_settings", settings.model_copy(update={"operator_kube_url": url})
    )
    async with running_operator():
        yield url


async def _until(check, timeout=30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"not reached in time; last: {last!r}")


def manifest(slug, **spec):
    return {
        "apiVersion": "courtside.dev/v1",
        "kind": "Tenant",
        "metadata": {"name": slug},
        "spec": {"slug": slug, "displayName": "Kopf Club", "adminEmail": f"a@{slug}.io", **spec},
    }


async def test_operator_reconciles_repairs_and_deletes_a_tenant(operator, superuser_conn):
    url = operator
    slug = f"kopf-{uuid.uuid4().hex[:8]}"
    role = "tenant_" + slug.replace("-", "_")
    async with httpx.AsyncClient(base_url=url) as k8s:
        created = await k8s.post(TENANTS, json=manifest(slug, deletionPolicy="Delete"))
        assert created.status_code in (200, 201), created.text

        async def ready():
            obj = (await k8s.get(f"{TENANTS}/{slug}")).json()
            conditions = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}
            return obj if conditions.get("Ready", {}).get("status") == "True" else None

        obj = await _until(ready)
        assert obj["status"]["secretName"] == f"tenant-{slug}-db"
        assert (
            await superuser_conn.fetchval(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", role
            )
            is True
        )
        secret = (await k8s.get(f"/api/v1/namespaces/courtside/secrets/tenant-{slug}-db")).json()
        assert secret["type"] == "kubernetes.io/basic-auth"
        assert base64.b64decode(secret["data"]["username"]).decode() == role
        assert secret["metadata"]["ownerReferences"][0]["kind"] == "Tenant"

        # A hand-made change is reverted by the timer.
        await superuser_conn.execute(f"ALTER ROLE {role} CONNECTION LIMIT 99")

        async def repaired():
            return (
                await superuser_conn.fetchval(
                    "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1", role
                )
                == 10
            )

        await _until(repaired)

        # A changed manifest reaches the row the API reads its limits from.
        changed = await k8s.patch(
            f"{TENANTS}/{slug}",
            json={"spec": {"rateLimits": {"perUser": {"requests": 7}}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert changed.status_code == 200, changed.text

        async def applied():
            limits = await superuser_conn.fetchval(
                "SELECT rate_limits->'perUser'->>'requests' FROM tenants WHERE slug = $1", slug
            )
            status = (await k8s.get(f"{TENANTS}/{slug}")).json()["status"]
            return limits == "7" and status["observedGeneration"] == 2

        await _until(applied)

        # Deletion runs the finalizer: rows purged, role dropped, object released.
        deleted = await k8s.delete(f"{TENANTS}/{slug}")
        assert deleted.status_code in (200, 202), deleted.text

        async def gone():
            return (await k8s.get(f"{TENANTS}/{slug}")).status_code == 404

        await _until(gone)
    assert await superuser_conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role) is None


async def test_courtside_operator_command_runs_the_operator(cluster, services, superuser_conn):
    import os
    import signal
    import subprocess
    import sys

    from courtside.local.devstack import free_port

    _, url = cluster
    port = free_port()
    env = {
        **os.environ,
        **services.env,
        "OPERATOR_KUBE_URL": url,
        "OPERATOR_HEALTH_PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "courtside.cli", "operator"], env=env)
    slug = f"cmd-{uuid.uuid4().hex[:8]}"
    try:
        async with httpx.AsyncClient() as client:

            async def live():
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/healthz")
                    return response.status_code == 200
                except httpx.HTTPError:
                    return False

            await _until(live)
            created = await client.post(f"{url}{TENANTS}", json=manifest(slug))
            assert created.status_code in (200, 201)

            async def ready():
                status = (await client.get(f"{url}{TENANTS}/{slug}")).json().get("status", {})
                return any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in status.get("conditions", [])
                )

            await _until(ready)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert (
        await superuser_conn.fetchval(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            "tenant_" + slug.replace("-", "_"),
        )
        is True
    )


@pytest.mark.timeout(240)
async def test_peered_replicas_leave_one_at_work(cluster, settings, monkeypatch, caplog):
    """The chart's peering: two replicas share a ClusterKopfPeering, each with the priority
    its pod name gives it. Equal priorities would freeze both (kopf's docs); distinct ones
    leave the higher at work and the other paused, and the Tenant gets Ready."""
    from courtside_operator import handlers
    from courtside_operator.main import peering_priority

    emulator, url = cluster
    peered = settings.model_copy(
        update={"operator_kube_url": url, "operator_peering": "courtside", "operator_priority": 0}
    )
    monkeypatch.setattr(handlers, "_settings", peered)
    low, high = sorted(
        peering_priority(peered, f"courtside-operator-5d8f7c9b4-{pod}")
        for pod in ("x2kqp", "7hmzt")
    )
    assert low != high
    caplog.set_level("INFO", logger="kopf")
    slug = f"peer-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=url) as k8s:
        made = await k8s.post(
            "/apis/kopf.dev/v1/clusterkopfpeerings",
            json={
                "apiVersion": "kopf.dev/v1",
                "kind": "ClusterKopfPeering",
                "metadata": {"name": "courtside"},
            },
        )
        assert made.status_code in (200, 201), made.text
        peer = {"standalone": False, "peering_name": "courtside"}

        async def watching_peers(count):
            # kmock replays nothing to a watch (a real API server sends what changed since
            # the list it follows): each peer starts once the one before watches.
            watches = [
                r
                for r in list(emulator)
                if r.url.path.endswith("/clusterkopfpeerings") and r.params.get("watch")
            ]
            return len(watches) >= count

        async with contextlib.AsyncExitStack() as replicas:
            await replicas.enter_async_context(running_operator(**peer, priority=low))
            await _until(lambda: watching_peers(1))
            await replicas.enter_async_context(running_operator(**peer, priority=high))
            await _until(lambda: watching_peers(2))
            nudges = iter(range(10**6))

            async def both_seen():
                peering = (await k8s.get("/apis/kopf.dev/v1/clusterkopfpeerings/courtside")).json()
                found = peering.get("status") or {}
                paused = "Pausing operations in favour of" in caplog.text
                if len(found) == 2 and not paused:
                    # Should a peer still have missed the other's arrival, a label change
                    # sends the object again (else the next keep-alive would, in ~1 min).
                    await k8s.patch(
                        "/apis/kopf.dev/v1/clusterkopfpeerings/courtside",
                        json={"metadata": {"labels": {"nudge": str(next(nudges))}}},
                        headers={"Content-Type": "application/merge-patch+json"},
                    )
                return found if len(found) == 2 and paused else None

            peers = await _until(both_seen, timeout=60)
            assert sorted(p["priority"] for p in peers.values()) == [low, high]
            assert "Pausing all operators" not in caplog.text
            created = await k8s.post(TENANTS, json=manifest(slug))
            assert created.status_code in (200, 201), created.text

            async def ready():
                status = (await k8s.get(f"{TENANTS}/{slug}")).json().get("status", {})
                return any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in status.get("conditions", [])
                )

            await _until(ready, timeout=90)


def test_each_peered_pod_gets_a_priority_of_its_own(settings, monkeypatch):
    from courtside_operator import main

    def kwargs(pod, **values):
        monkeypatch.setenv("POD_ID", pod)
        monkeypatch.setattr(main, "get_settings", lambda: settings.model_copy(update=values))
        return main.operator_kwargs()

    alone = kwargs("courtside-operator-0", operator_peering="", operator_priority=0)
    assert (alone["standalone"], alone["peering_name"], alone["priority"]) == (True, None, 0)
    pods = [f"courtside-operator-5d8f7c9b4-{n:05d}" for n in range(50)]
    priorities = [kwargs(pod, operator_peering="courtside", operator_priority=0) for pod in pods]
    assert {p["standalone"] for p in priorities} == {False}
    assert {p["peering_name"] for p in priorities} == {"courtside"}
    assert len({p["priority"] for p in priorities}) == len(pods)
    # The same pod keeps its priority (a restarted container is still the same peer).
    assert kwargs(pods[0], operator_peering="courtside")["priority"] == priorities[0]["priority"]
    # An explicit OPERATOR_PRIORITY wins.
    assert kwargs(pods[0], operator_peering="courtside", operator_priority=7)["priority"] == 7


async def test_operator_writes_storage_usage_to_the_tenants_status(operator, db):
    """What the API's uploads hold reaches `kubectl get tenants` by the next resync."""
    url = operator
    slug = f"kopf-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=url) as k8s:
        created = await k8s.post(TENANTS, json=manifest(slug, storage={"quotaBytes": 10**9}))
        assert created.status_code in (200, 201), created.text

        async def usage_reported():
            usage = (await k8s.get(f"{TENANTS}/{slug}")).json().get("status", {}).get("usage")
            return usage if usage and usage["storageQuotaBytes"] == 10**9 else None

        assert (await _until(usage_reported))["storageUsedBytes"] == 0
        tenant_id = tenant_id_for_slug(slug)
        await add_media(db, tenant_id, status=MediaStatus.READY, size=4_000, renditions=1_000)
        await add_media(db, tenant_id, status=MediaStatus.PENDING_UPLOAD, size=2_500)

        async def storage_reported():
            usage = (await k8s.get(f"{TENANTS}/{slug}")).json()["status"]["usage"]
            return usage if usage["storageUsedBytes"] == 5_000 else None

        usage = await _until(storage_reported)
        assert usage["storageReservedBytes"] == 2_500
