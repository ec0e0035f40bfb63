"""The real kopf operator, in-process, against kmock's Kubernetes emulator, with real
PostgreSQL, Redis and S3."""

import asyncio
import base64
import threading
import uuid

import httpx
import kmock
import pytest

from tests.k8s_emulator import ClusterEmulator

pytestmark = pytest.mark.timeout(120)
TENANTS = "/apis/courtside.dev/v1/tenants"


@pytest.fixture
async def cluster():
    async with ClusterEmulator() as emulator, kmock.Server(emulator) as server:
        emulator.serve(
            "apiextensions.k8s.io/v1/customresourcedefinitions",
            "CustomResourceDefinition",
            namespaced=False,
        )
        emulator.serve("v1/namespaces", "Namespace", namespaced=False)
        emulator.serve("v1/events", "Event", namespaced=True)
        emulator.serve("v1/secrets", "Secret", namespaced=True)
        emulator.serve(
            "courtside.dev/v1/tenants", "Tenant", namespaced=False, subresources={"status"}
        )
        yield emulator, str(server.url)


@pytest.fixture
async def operator(cluster, settings, monkeypatch):
    import kopf
    from courtside_operator import handlers

    _, url = cluster
    monkeypatch.setattr(
        handlers, "_settings", settings.model_copy(update={"operator_kube_url": url})
    )
    # Its own thread and event loop, as in production: kopf stops every task it didn't
    # start when it exits, which would include the test's own.
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=asyncio.run,
        daemon=True,
        args=(kopf.operator(clusterwide=True, standalone=True, stop_flag=stop, ready_flag=ready),),
    )
    thread.start()
    assert await asyncio.to_thread(ready.wait, 30)
    yield url
    stop.set()
    await asyncio.to_thread(thread.join, 30)
    assert not thread.is_alive()


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
