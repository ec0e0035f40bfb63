"""Feed read benchmark (`make bench-feed`).

Seeds 50 tenants x 20 spaces x 200 posts, then loads GET /posts?space_id=…&limit=20 over
real HTTP with tokens of random space members (32 connections), and, in the same run, a
bare Starlette + asyncpg endpoint running the same query in the same RLS transaction
(bench/bare_feed.py). Prints requests/s, p50, p99 and the ratio of the two.
"""

import asyncio
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402

from app.auth.security import AccessClaims, issue_access_token  # noqa: E402
from bench.common import ROOT, Stack, ensure_wrk, python  # noqa: E402
from courtside.local.devstack import free_port  # noqa: E402

TENANTS, SPACES, POSTS, ATHLETES, MEMBERS_PER_SPACE = 50, 20, 200, 20, 6
CONNECTIONS, DURATION_S, WARMUP_S, ROUNDS = 32, 8, 3, 3
Result = tuple[float, float, float, int]  # req/s, p50 ms, p99 ms, failures


def session_of(user: uuid.UUID) -> uuid.UUID:
    """The bench user's one session: the API checks each token's session is live."""
    return uuid.uuid5(user, "bench-session")


async def seed(dsn: str) -> list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]:
    """Returns (tenant, space, member) triples to request as."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    tenants, users, memberships, spaces, members, posts = [], [], [], [], [], []
    sessions = []  # one signed-in session (refresh-token family) per user
    picks = []
    for t in range(TENANTS):
        tenant = uuid.uuid4()
        tenants.append((tenant, f"bench-{t}-{tenant.hex[:6]}", f"Bench {t}"))
        people = [uuid.uuid4() for _ in range(ATHLETES + 1)]
        coach, athletes = people[0], people[1:]
        for i, person in enumerate(people):
            users.append((person, f"b{t}-{i}-{person.hex[:8]}@bench.test", "Bench", "x", tenant))
            memberships.append((tenant, person, "COACH" if i == 0 else "ATHLETE", now))
            sessions.append(
                (tenant, person, session_of(person), uuid.uuid4().hex, now + timedelta(days=1))
            )
        for _ in range(SPACES):
            space = uuid.uuid4()
            spaces.append((space, tenant, "Squad", coach, now))
            chosen = [coach, *rng.sample(athletes, MEMBERS_PER_SPACE - 1)]
            members += [(tenant, space, m, now) for m in chosen]
            posts += [
                (
                    uuid.uuid4(),
                    tenant,
                    space,
                    rng.choice(chosen),
                    f"Post {p} " * 8,
                    now - timedelta(seconds=p * 60 + rng.random()),
                )
                for p in range(POSTS)
            ]
            picks += [(tenant, space, m) for m in chosen]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table("tenants", records=tenants, columns=["id", "slug", "name"])
        await conn.copy_records_to_table(
            "users",
            records=users,
            columns=["id", "email", "name", "password_hash", "default_tenant_id"],
        )
        await conn.copy_records_to_table(
            "tenant_memberships",
            records=memberships,
            columns=["tenant_id", "user_id", "role", "created_at"],
        )
        await conn.copy_records_to_table(
            "refresh_tokens",
            records=sessions,
            columns=["tenant_id", "user_id", "family_id", "token_hash", "expires_at"],
        )
        await conn.copy_records_to_table(
            "spaces", records=spaces, columns=["id", "tenant_id", "name", "owner_id", "created_at"]
        )
        await conn.copy_records_to_table(
            "space_members",
            records=members,
            columns=["tenant_id", "space_id", "user_id", "created_at"],
        )
        await conn.copy_records_to_table(
            "posts",
            records=posts,
            columns=["id", "tenant_id", "space_id", "author_id", "body", "created_at"],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return picks


def run_wrk(wrk: str, url: str, lines_file: Path, seconds: int) -> Result:
    script = ROOT / "bench" / "feed.lua"
    out = subprocess.run(
        [wrk, "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(script), url]  # noqa: S603
        + ["--", str(lines_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"RESULT (\S+) (\S+) (\S+) (\d+) (\d+)", out)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    rps, p50, p99, non2xx, errors = match.groups()
    return float(rps), float(p50), float(p99), int(non2xx) + int(errors)


async def _python_load(
    url: str, lines: list[str], seconds: float
) -> tuple[float, float, float, int]:
    import httpx

    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=url, limits=limits) as client:

        async def worker() -> None:
            nonlocal failures
            rng = random.Random()
            while time.perf_counter() < deadline:
                path, _, token = rng.choice(lines).partition(" ")
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                started = time.perf_counter()
                response = await client.get(path, headers=headers)
                latencies.append(time.perf_counter() - started)
                failures += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return (
        len(latencies) / elapsed,
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
        failures,
    )


def load(wrk: str | None, url: str, lines: list[str], seconds: int) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    try:
        if wrk:
            return run_wrk(wrk, url, Path(f.name), seconds)
        return asyncio.run(_python_load(url, lines, seconds))
    finally:
        os.unlink(f.name)


def _show(name: str, result: Result) -> None:
    rps, p50, p99, failed = result
    print(
        f"{name:10s} {rps:8.0f} req/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   "
        f"non-2xx/errors {failed}"
    )


def _combine(results: list[Result]) -> Result:
    return (
        statistics.mean(r[0] for r in results),
        statistics.median(r[1] for r in results),
        max(r[2] for r in results),
        sum(r[3] for r in results),
    )


def main() -> None:
    stack = Stack()
    try:
        started = time.perf_counter()
        picks = asyncio.run(seed(stack.superuser_dsn))
        print(
            f"seeded {TENANTS} tenants x {SPACES} spaces x {POSTS} posts "
            f"({TENANTS * SPACES * POSTS} posts) in {time.perf_counter() - started:.1f}s"
        )
        rng = random.Random(11)
        sample = [rng.choice(picks) for _ in range(3000)]
        product_lines = [
            f"/posts?space_id={s}&limit=20 "
            + issue_access_token(stack.settings, AccessClaims(u, t, session_of(u)), role="ATHLETE")
            for t, s, u in sample
        ]
        bare_lines = [f"/feed?space_id={s}&tenant={t}&user={u}&limit=20 " for t, s, u in sample]

        api_port, bare_port = free_port(), free_port()
        generous = {
            "RATE_LIMIT_MAX_PER_IP": "100000000",
            "RATE_LIMIT_MAX_PER_USER": "100000000",
            "RATE_LIMIT_MAX_PER_TENANT": "100000000",
            "RATE_LIMIT_BURST": "1000000",
            "DB_READ_POOL_SIZE": str(CONNECTIONS),
            "METRICS_PORT": str(free_port()),  # the API serves its metrics on their own port
        }
        # For profiling: e.g. BENCH_API_ENV="RATE_LIMIT_ENABLED=false" to see a part's cost.
        generous.update(
            dict(item.split("=", 1) for item in os.environ.get("BENCH_API_ENV", "").split())
        )
        stack.serve_api(
            api_port,
            env=generous,
        )
        stack.serve(
            [python(), "bench/bare_feed.py"],
            bare_port,
            env={"BARE_PORT": str(bare_port), "PYTHONPATH": str(ROOT)},
        )
        wrk = ensure_wrk()
        generator = "wrk (2 threads)" if wrk else "Python httpx (wrk not available)"
        print(
            f"load: {generator}, {CONNECTIONS} connections, {ROUNDS} interleaved rounds of "
            f"{DURATION_S}s per target after a {WARMUP_S}s warm-up each; one uvicorn worker "
            "per server. The load "
            f"generator shares this machine's {os.cpu_count()} cores with the servers and "
            "PostgreSQL."
        )
        print(
            "product path: JWT decode (cached), tenant policy (cached), the caller's role "
            "and session from the database (cached, read per tenant in batches), rate limits for "
            "IP/user/tenant (decided in-process, charged to Redis every 50 ms), RLS "
            "transaction, query, JSON, request id and Prometheus metrics; LOG_LEVEL=WARNING "
            "for both servers, so no access-log line per request."
        )
        bare_url, product_url = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{api_port}"
        load(wrk, bare_url, bare_lines, WARMUP_S)
        load(wrk, product_url, product_lines, WARMUP_S)
        # Interleaved rounds, so a burst of other work on the machine hits both targets.
        bares, products = [], []
        for round_number in range(1, ROUNDS + 1):
            bares.append(load(wrk, bare_url, bare_lines, DURATION_S))
            products.append(load(wrk, product_url, product_lines, DURATION_S))
            _show(f"bare #{round_number}", bares[-1])
            _show(f"product #{round_number}", products[-1])
        bare, product = _combine(bares), _combine(products)
        _show("bare", bare)
        _show("product", product)
        ratio = product[0] / bare[0] if bare[0] else 0.0
        print(
            "(req/s: mean of the rounds; p50: median; p99: worst round)\n"
            f"targets: ratio >= 0.5 ({'met' if ratio >= 0.5 else 'MISSED'}), "
            f"p99 <= 50 ms ({'met' if product[2] <= 50 else 'MISSED'})"
        )
        print(f"feed: {product[0]:.0f} req/s, p99 {product[2]:.1f} ms, ratio to bare {ratio:.2f}")
    finally:
        stack.close()


if __name__ == "__main__":
    main()
