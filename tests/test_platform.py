"""Cross-cutting behaviour: health, metrics, docs, request ids, problem+json, rate limits."""

import asyncio
import json
import logging

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.infra.observability import serve_metrics
from app.main import create_app
from courtside.local.devstack import free_port
from tests.conftest import random_client_ip
from tests.factories import register_tenant
from tests.test_secrets import production

PROBLEM = "application/problem+json"


async def test_liveness_and_readiness(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}


async def test_metrics_count_requests_by_route_template(client):
    admin = await register_tenant(client)
    await client.get(f"/tenants/{admin.tenant_id}", headers=admin.headers)
    port = free_port()
    stop = serve_metrics(port, "127.0.0.1")
    try:
        async with httpx.AsyncClient() as scraper:
            text = (await scraper.get(f"http://127.0.0.1:{port}/metrics")).text
    finally:
        stop()
    assert (
        'courtside_http_requests_total{method="GET",route="/tenants/{tenant_id}",status="200"}'
    ) in text
    assert str(admin.tenant_id) not in text
    assert "courtside_http_request_duration_seconds_bucket" in text


async def test_the_public_app_serves_no_metrics(client):
    """Metrics name routes, tenants' traffic and limiter state: only Prometheus gets them,
    on METRICS_PORT (tests/test_api_server.py runs the real server)."""
    assert (await client.get("/metrics")).status_code == 404


async def test_every_response_carries_a_request_id(client):
    generated = await client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32
    echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    unsafe = await client.get("/healthz", headers={"X-Request-ID": "bad id\nwith newline"})
    assert unsafe.headers["x-request-id"] != "bad id\nwith newline"


async def test_log_lines_are_json_with_the_request_id(client, caplog):
    caplog.set_level(logging.INFO, logger="courtside.access")
    await client.get("/healthz", headers={"X-Request-ID": "trace-me-1"})
    records = [r for r in caplog.records if r.name == "courtside.access"]
    assert records and records[-1].msg["request_id"] == "trace-me-1"
    assert records[-1].msg["route"] == "/healthz"


async def test_unknown_route_and_wrong_method_are_problem_json(client):
    missing = await client.get("/no-such-thing")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    assert missing.json()["status"] == 404
    wrong = await client.delete("/healthz")
    assert wrong.status_code == 405 and wrong.headers["content-type"] == PROBLEM


async def test_openapi_is_3_1_and_lists_the_endpoints(client):
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    for path in [
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/tenants/{tenant_id}",
        "/tenants/{tenant_id}/invite",
        "/tenants/{tenant_id}/members",
    ]:
        assert path in spec["paths"], path
    assert (await client.get("/docs")).status_code == 200


@pytest.mark.parametrize("api_docs, expected", [(None, 404), (True, 200)])
async def test_production_publishes_no_docs_unless_asked(settings, api_docs, expected):
    application = create_app(production(log_level=settings.log_level, api_docs=api_docs))
    async with _client_for(application) as c:
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert (await c.get(path)).status_code == expected, path


@pytest.fixture
async def limited_app(settings):
    """An app with small limits; its own Redis keys are per client IP, user and tenant."""
    limited = settings.model_copy(
        update={
            "rate_limit_max_per_ip": 5,
            "rate_limit_max_per_user": 1000,
            "rate_limit_max_per_tenant": 1000,
            "rate_limit_burst": 2,
            "rate_limit_window_seconds": 60,
        }
    )
    application = create_app(limited)
    async with LifespanManager(application):
        yield application


def _client_for(application, ip=None):
    transport = httpx.ASGITransport(app=application, client=(ip or random_client_ip(), 1))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def test_rate_limiter_returns_429_with_retry_after_past_the_limit(limited_app):
    async with _client_for(limited_app) as c:
        statuses = []
        for _ in range(6):
            r = await c.post("/auth/login", json={"email": "x@example.com", "password": "pw"})
            statuses.append(r.status_code)
        assert statuses[:3] == [401, 401, 401]  # burst of 2 on top of the steady rate
        assert statuses[-1] == 429
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["content-type"] == PROBLEM
    async with _client_for(limited_app) as other_ip:
        r = await other_ip.post("/auth/login", json={"email": "x@example.com", "password": "pw"})
        assert r.status_code == 401  # other clients are unaffected


async def test_readiness_is_rate_limited_per_client_address(limited_app):
    async with _client_for(limited_app) as c:
        statuses = [(await c.get("/readyz")).status_code for _ in range(6)]
        assert statuses[0] == 200 and statuses[-1] == 429
    async with _client_for(limited_app) as other_ip:
        assert (await other_ip.get("/readyz")).status_code == 200


async def test_per_tenant_override_is_enforced_within_seconds(client, app, superuser_conn):
    admin = await register_tenant(client)
    url = f"/tenants/{admin.tenant_id}"
    assert all(
        [(await client.get(url, headers=admin.headers)).status_code == 200 for _ in range(5)]
    )
    await superuser_conn.execute(
        "UPDATE tenants SET rate_limits = $1 WHERE id = $2",
        json.dumps({"perTenant": {"requests": 2, "windowSeconds": 60, "burst": 0}}),
        admin.tenant_id,
    )
    statuses = []
    deadline = asyncio.get_running_loop().time() + 10
    while 429 not in statuses and asyncio.get_running_loop().time() < deadline:
        statuses.append((await client.get(url, headers=admin.headers)).status_code)
        await asyncio.sleep(0.05)
    assert 429 in statuses
    # Another tenant keeps the defaults.
    other = await register_tenant(client)
    assert (
        await client.get(f"/tenants/{other.tenant_id}", headers=other.headers)
    ).status_code == 200


async def test_suspended_tenant_is_refused_with_a_clear_problem(client, superuser_conn):
    admin = await register_tenant(client)
    await superuser_conn.execute(
        "UPDATE tenants SET suspended = true WHERE id = $1", admin.tenant_id
    )
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        r = await client.get(f"/tenants/{admin.tenant_id}", headers=admin.headers)
        if r.status_code != 200 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert r.status_code == 403
    assert r.json()["type"].endswith("/tenant-suspended")
    login = await client.post(
        "/auth/login", json={"email": admin.email, "password": admin.password}
    )
    assert login.status_code == 403


@pytest.mark.parametrize("fail_open, expected", [(True, 200), (False, 503)])
async def test_redis_down_behaviour_is_the_configured_choice(client, settings, fail_open, expected):
    admin = await register_tenant(client)
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    application = create_app(
        settings.model_copy(update={"redis_url": dead_redis, "rate_limit_fail_open": fail_open})
    )
    async with LifespanManager(application), _client_for(application) as c:
        r = await c.get(f"/tenants/{admin.tenant_id}", headers=admin.headers)
        assert r.status_code == expected
        if expected != 200:
            assert r.headers["content-type"] == PROBLEM
        ready = await c.get("/readyz")
        # Not ready, and nothing more for whoever asks (the log says what failed).
        assert ready.status_code == 503 and ready.headers["content-type"] == PROBLEM
        assert "redis" not in ready.text.lower()


def test_standard_library_records_become_json_lines(capsys, settings):
    from app.infra.logging import configure_logging

    configure_logging("INFO")
    try:
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
        logging.getLogger("kopf.objects").warning("handler retried")
    finally:
        configure_logging(settings.log_level)
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    assert [(r["logger"], r["event"], r["level"]) for r in lines] == [
        ("uvicorn.error", "Started server process [42]", "info"),
        ("kopf.objects", "handler retried", "warning"),
    ]
    assert "Logging error" not in captured.err
