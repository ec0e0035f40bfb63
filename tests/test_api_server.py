"""The API as `courtside api` runs it (uvicorn, proxy headers, the metrics port), called over
real TCP: which client address the app believes, and what the public port serves."""

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from pydantic import ValidationError

from app.infra.settings import Settings
from courtside.local.devstack import free_port

# The ingress controller's address, the only proxy the server trusts.
INGRESS = "127.0.0.1"
# Per client address: PER_ADDRESS requests at once (a steady 1 + a burst), then 429.
PER_ADDRESS = 2
REQUESTS = 5


@dataclass
class Server:
    url: str
    metrics_url: str


@pytest.fixture(scope="module")
def api_server(settings: Settings) -> Iterator[Server]:
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "METRICS_PORT": str(metrics_port),
        "FORWARDED_ALLOW_IPS": INGRESS,
        "RATE_LIMIT_MAX_PER_IP": "1",
        "RATE_LIMIT_BURST": str(PER_ADDRESS - 1),
        "RATE_LIMIT_WINDOW_SECONDS": "60",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "courtside.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read()  # type: ignore[union-attr]
            try:
                if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


def connecting_from(address: str, server: Server) -> httpx.AsyncClient:
    """A client whose TCP connections come from `address` (any 127.x.y.z is local)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(transport=transport, base_url=server.url)


def fresh_address(first_octet: int) -> str:
    rest = (random.randint(1, 254), random.randint(0, 255), random.randint(1, 254))
    return ".".join(map(str, (first_octet, *rest)))


async def readiness_statuses(client: httpx.AsyncClient, forwarded_for: list[str]) -> list[int]:
    """/readyz is limited per client address: 429 once the address the app sees is spent."""
    return [
        (await client.get("/readyz", headers={"X-Forwarded-For": value})).status_code
        for value in forwarded_for
    ]


async def test_forwarded_for_from_an_untrusted_client_is_ignored(api_server):
    attacker = fresh_address(127)
    async with connecting_from(attacker, api_server) as c:
        # A new forged address on every request would be a new allowance every time.
        forged = [fresh_address(100) for _ in range(REQUESTS)]
        statuses = await readiness_statuses(c, forged)
    assert statuses[:PER_ADDRESS] == [200] * PER_ADDRESS
    assert statuses[-1] == 429  # every request was charged to the attacker's own address


async def test_trusted_ingress_is_believed_for_the_address_it_appended(api_server):
    async with connecting_from(INGRESS, api_server) as ingress:
        # "client-sent, ingress-appended": the app takes the right-most address the ingress
        # added, so each new real client gets its own allowance...
        forged = fresh_address(100)
        appended = [f"{forged}, {fresh_address(100)}" for _ in range(REQUESTS)]
        assert await readiness_statuses(ingress, appended) == [200] * REQUESTS
        # ...and one real client can't earn more by varying what it sends itself.
        client = fresh_address(100)
        varied = [f"{fresh_address(100)}, {client}" for _ in range(REQUESTS)]
        assert (await readiness_statuses(ingress, varied))[-1] == 429


def test_trusting_every_proxy_is_refused():
    with pytest.raises(ValidationError, match="FORWARDED_ALLOW_IPS"):
        Settings(_env_file=None, forwarded_allow_ips="*")  # type: ignore[call-arg]
    ingress_pods = "10.0.0.0/8, 192.168.1.7"
    trusted = Settings(_env_file=None, forwarded_allow_ips=ingress_pods)  # type: ignore[call-arg]
    assert trusted.forwarded_allow_ips == ingress_pods


async def test_metrics_are_served_on_their_own_port_only(api_server):
    async with httpx.AsyncClient(base_url=api_server.url) as public:
        assert (await public.get("/healthz")).status_code == 200
        assert (await public.get("/metrics")).status_code == 404
    async with httpx.AsyncClient() as scraper:
        metrics = await scraper.get(f"{api_server.metrics_url}/metrics")
    assert metrics.status_code == 200
    assert 'courtside_http_requests_total{method="GET",route="/healthz",status="200"}' in (
        metrics.text
    )
