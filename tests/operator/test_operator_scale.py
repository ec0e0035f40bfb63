"""Many Tenants at once: the real kopf operator, 200 Tenants applied to the emulator
together (as on a fresh install, or a restart's resumes), real PostgreSQL, Redis, S3, SMTP.

Asserts correctness only: every Tenant becomes Ready and the operator never holds more
PostgreSQL connections (as the owner role) than OPERATOR_DB_MAX_CONNECTIONS. It PRINTS the
time to all Ready and the peak connection count (run with -s to see them)."""

import asyncio
import contextlib
import threading
import time
import uuid

import httpx
import kmock
import pytest
from sqlalchemy.engine import make_url

from tests.k8s_emulator import ClusterEmulator, serve_operator_resources

pytestmark = pytest.mark.timeout(240)
TENANTS = "/apis/courtside.dev/v1/tenants"
COUNT = 200
MAX_CONNECTIONS = 4
MAX_CONCURRENT = 8
KEPT_REQUESTS = 20


def _version(obj) -> int:
    value = str((obj.get("metadata") or {}).get("resourceVersion", ""))
    return int(value) if value.isdigit() else 0


class ListThenWatchEmulator(ClusterEmulator):
    """As a real API server: a list says its resourceVersion, and a watch from it streams
    only what changed after it. (kmock answers a list with "..." and starts every watch
    by sending every object again as ADDED; with 200 objects listed at start-up, kopf then
    sees each twice, and one whose second finalizer patch loses the race (422) waits for a
    change that never comes.)"""

    async def __call__(self, raw_request):
        # kmock keeps every request it served and matches each new one against that
        # history: thousands of requests make each one slower than the operator. The
        # emulator's own routes need none of it (no test here reads the history).
        del self._requests[:-KEPT_REQUESTS]
        return await super().__call__(raw_request)

    async def _serve_list(self, request):
        payload = await super()._serve_list(request)
        latest = max((_version(obj) for obj in payload["items"]), default=0)
        payload["metadata"]["resourceVersion"] = str(latest)
        return payload

    async def _serve_watch(self, request):
        since = request.params.get("resourceVersion", "")
        async for event in super()._serve_watch(request):
            if (
                since.isdigit()
                and isinstance(event, dict)
                and event.get("type") == "ADDED"
                and _version(event.get("object") or {}) <= int(since)
            ):
                continue  # listed already, unchanged since
            yield event


@pytest.fixture
async def cluster():
    async with ListThenWatchEmulator() as emulator, kmock.Server(emulator) as server:
        serve_operator_resources(emulator)
        yield str(server.url)


@contextlib.asynccontextmanager
async def running_operator(settings, url, monkeypatch):
    """The real kopf operator in its own thread and event loop (as test_kopf_operator.py
    runs it), bounded as the test says."""
    import kopf
    from courtside_operator import handlers

    monkeypatch.setattr(
        handlers,
        "_settings",
        settings.model_copy(
            update={
                "operator_kube_url": url,
                "operator_max_concurrent_reconciles": MAX_CONCURRENT,
                "operator_db_max_connections": MAX_CONNECTIONS,
                # The first resync comes after this (plus jitter): the figures are the
                # start-up burst's alone.
                "operator_resync_seconds": 3600.0,
            }
        ),
    )
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=asyncio.run,
        daemon=True,
        args=(kopf.operator(clusterwide=True, standalone=True, stop_flag=stop, ready_flag=ready),),
    )
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 30)
        yield
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 60)
    assert not thread.is_alive()


def manifest(slug):
    return {
        "apiVersion": "courtside.dev/v1",
        "kind": "Tenant",
        "metadata": {"name": slug},
        "spec": {"slug": slug, "displayName": "Scale Club", "adminEmail": f"a@{slug}.io"},
    }


async def test_200_tenants_become_ready_within_the_connection_bound(
    cluster, settings, superuser_conn, monkeypatch
):
    owner = make_url(settings.migration_database_url).username

    async def owner_connections() -> int:
        # Every session of the owner role, whatever opened it.
        return await superuser_conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", owner
        )

    before = await owner_connections()  # none, unless something else holds some
    peak = 0
    done = asyncio.Event()

    async def watch_connections():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, await owner_connections() - before)
            await asyncio.sleep(0.02)

    prefix = f"scale-{uuid.uuid4().hex[:6]}"
    slugs = [f"{prefix}-{i:03d}" for i in range(COUNT)]
    async with httpx.AsyncClient(base_url=cluster, timeout=30) as k8s:
        # Applied before the operator starts: its first list holds all of them, the burst
        # of reconciles a fresh install or a restart's resumes make.
        for slug in slugs:
            created = await k8s.post(TENANTS, json=manifest(slug))
            assert created.status_code in (200, 201), created.text

        watcher = asyncio.create_task(watch_connections())
        started = time.monotonic()
        async with running_operator(settings, cluster, monkeypatch):
            ready: set[str] = set()
            deadline = started + 150
            while len(ready) < COUNT and time.monotonic() < deadline:
                for item in (await k8s.get(TENANTS)).json()["items"]:
                    conditions = item.get("status", {}).get("conditions", [])
                    if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                        ready.add(item["metadata"]["name"])
                await asyncio.sleep(0.5)
            elapsed = time.monotonic() - started
            stuck = [
                (i["metadata"]["name"], i.get("status"))
                for i in (await k8s.get(TENANTS)).json()["items"]
                if i["metadata"]["name"] not in ready
            ]
        done.set()
        await watcher
    print(
        f"\n{COUNT} Tenants: {len(ready)} Ready {elapsed:.1f} s after the operator started; "
        f"peak owner-role connections {peak} (bound {MAX_CONNECTIONS}; {MAX_CONCURRENT} "
        "reconciles at once)"
    )
    assert ready >= set(slugs), stuck[:3]
    assert 0 < peak <= MAX_CONNECTIONS
