"""Booking benchmark (`make bench-booking`).

One tenant, seeded in the database as bench/feed.py seeds: 20 coaches, each with one
private session type (45 min, 15 min buffer after, 60 min notice) and weekly hours every
day 07:00-19:00 in their own zone for the next four weeks; 200 athletes, each with a live
session and an access token. Then, through the real API (`courtside api`, one uvicorn
worker, generous rate limits) and real PostgreSQL:

1. mixed (the issue's run): 200 athletes at once for 20 s, each in a loop without pause:
   GET /scheduling/availability/{coach}?from&to&tz over four weeks (a random coach, the
   athlete's own zone), then POST /scheduling/sessions/book for one of the first open
   slots (a client shows the next ones first, so athletes race and 409s happen);
2. a quiet probe: the same slot query from one client, one at a time, so its own cost is
   seen apart from queueing behind 200 others (200 athletes without pause keep 200
   requests in flight: by Little's law each waits about 200 / the server's requests/s);
3. book only (for diagnosis): the same 200 athletes booking free, non-overlapping starts
   of 20 more coaches through the API, no slot queries: the booking path alone;
4. bare: 200 concurrent tasks doing the booking's insert in a bare asyncpg transaction
   through the runtime role (tenant context set as app/infra/db.py TENANT_CONTEXT_SQL
   does; coach_blocks row, coaching_sessions row, outbox_events row), on a pool as large
   as the API's (DB_POOL_SIZE + DB_MAX_OVERFLOW), at free hours months after the rest.

Finally, straight from the database as the superuser: live blocks of one coach whose
blocked ranges overlap (pairs), places beyond a block's capacity, and, not trusting the
blocks, live sessions of one coach whose buffered times overlap another's. Targets
(printed met or MISSED, never asserted): 0 double bookings, mixed bookings/s >= 0.5 of
bare, slot query p99 <= 50 ms. The load generator (httpx, one client with one keep-alive
connection per athlete, in this process on uvloop) shares the machine's cores with the
API server and PostgreSQL; its CPU use is measured and printed beside theirs.
"""

import asyncio
import itertools
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import orjson  # noqa: E402
import psutil  # noqa: E402
import uvloop  # noqa: E402

from app.auth.security import AccessClaims, issue_access_token  # noqa: E402
from app.infra.db import TENANT_CONTEXT_SQL, asyncpg_dsn  # noqa: E402
from bench.common import Stack  # noqa: E402
from courtside.local.devstack import free_port  # noqa: E402

COACHES, BOOK_ONLY_COACHES, ATHLETES = 20, 20, 200
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))  # the mixed and bare phases
BOOK_ONLY_SECONDS = min(10.0, SECONDS)
WARMUP_SECONDS = min(3.0, SECONDS)
QUIET_QUERIES = 100
RANGE_DAYS = 28
DURATION_MIN, BUFFER_AFTER_MIN, NOTICE_MIN = 45, 15, 60
DAY_START, DAY_END = 7, 19  # the coaches' hours, wall clock in their zone
PICK_FROM_FIRST = 24  # an athlete picks among the first open slots, as a client lists them
COACH_ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Europe/London", "UTC"]
VIEWER_ZONES = ["Europe/Paris", "America/Chicago", "Asia/Tokyo", "UTC", "America/New_York"]
BARE_OFFSET_DAYS = 120  # bare bookings start here: far from the API's four weeks
TARGET_RATIO, TARGET_P99_MS = 0.5, 50.0


def session_of(user: uuid.UUID) -> uuid.UUID:
    """The bench user's one session: the API checks each token's session is live."""
    return uuid.uuid5(user, "bench-session")


@dataclass(frozen=True)
class Coach:
    id: uuid.UUID
    session_type_id: uuid.UUID
    zone: str


@dataclass(frozen=True)
class Seeded:
    tenant: uuid.UUID
    coaches: list[Coach]  # the mixed phase's
    book_only: list[Coach]
    athletes: list[uuid.UUID]


async def seed(dsn: str) -> Seeded:
    tenant = uuid.uuid4()
    now = datetime.now(UTC)
    coaches = [
        Coach(uuid.uuid4(), uuid.uuid4(), COACH_ZONES[i % len(COACH_ZONES)])
        for i in range(COACHES + BOOK_ONLY_COACHES)
    ]
    athletes = [uuid.uuid4() for _ in range(ATHLETES)]
    users = [(c.id, "COACH") for c in coaches] + [(a, "ATHLETE") for a in athletes]
    rules = []
    for coach in coaches:
        # Four weeks from the coach's own today: the slot query's range is covered.
        first = datetime.now(ZoneInfo(coach.zone)).date()
        last = first + timedelta(days=RANGE_DAYS)
        rules += [
            (
                uuid.uuid4(),
                tenant,
                coach.id,
                weekday,
                clock(DAY_START),
                clock(DAY_END),
                coach.zone,
                first,
                last,
            )
            for weekday in range(7)
        ]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, 'Bench booking')",
            tenant,
            f"bench-booking-{tenant.hex[:8]}",
        )
        await conn.copy_records_to_table(
            "users",
            records=[
                (u, f"k{i}-{u.hex[:8]}@bench.test", "Bench", "x", tenant)
                for i, (u, _) in enumerate(users)
            ],
            columns=["id", "email", "name", "password_hash", "default_tenant_id"],
        )
        await conn.copy_records_to_table(
            "tenant_memberships",
            records=[(tenant, u, role, now) for u, role in users],
            columns=["tenant_id", "user_id", "role", "created_at"],
        )
        await conn.copy_records_to_table(
            "refresh_tokens",
            records=[
                (tenant, a, session_of(a), uuid.uuid4().hex, now + timedelta(days=1))
                for a in athletes
            ],
            columns=["tenant_id", "user_id", "family_id", "token_hash", "expires_at"],
        )
        await conn.copy_records_to_table(
            "session_types",
            records=[
                (
                    c.session_type_id,
                    tenant,
                    c.id,
                    "Private lesson",
                    DURATION_MIN,
                    0,
                    BUFFER_AFTER_MIN,
                    "Court 1",
                    1,
                    NOTICE_MIN,
                    60,
                )
                for c in coaches
            ],
            columns=[
                "id",
                "tenant_id",
                "coach_id",
                "title",
                "duration_minutes",
                "buffer_before_minutes",
                "buffer_after_minutes",
                "location",
                "capacity",
                "min_notice_minutes",
                "booking_window_days",
            ],
        )
        await conn.copy_records_to_table(
            "availability_rules",
            records=rules,
            columns=[
                "id",
                "tenant_id",
                "coach_id",
                "weekday",
                "start_time",
                "end_time",
                "time_zone",
                "effective_from",
                "effective_until",
            ],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return Seeded(tenant, coaches[:COACHES], coaches[COACHES:], athletes)


# --- Measuring ----------------------------------------------------------------------------


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def _latencies(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"p50 {_pct(values, 0.5):.1f} ms, p95 {_pct(values, 0.95):.1f} ms, "
        f"p99 {_pct(values, 0.99):.1f} ms, max {max(values):.1f} ms"
    )


@dataclass(frozen=True)
class CpuSample:
    wall: float
    client: float
    server: dict[int, float]  # CPU seconds by pid
    postgres: dict[int, float]
    busy: float  # the whole machine's


@dataclass(frozen=True)
class CpuUse:
    wall: float
    client: float
    server: float
    postgres: float
    other: float
    idle: float


class Cpu:
    """CPU seconds used by the load generator (this process), the API server (and its
    children) and PostgreSQL (the postmaster and its backends) over a phase, and by
    everything else on the machine (other people's work included)."""

    def __init__(self, server_pid: int, postmaster_pid: int | None) -> None:
        self.me = psutil.Process()
        self.server = psutil.Process(server_pid)
        self.postmaster = psutil.Process(postmaster_pid) if postmaster_pid else None

    @staticmethod
    def _tree(process: psutil.Process | None) -> dict[int, float]:
        if process is None:
            return {}
        used: dict[int, float] = {}
        try:
            processes = [process, *process.children(recursive=True)]
        except psutil.NoSuchProcess:
            return used
        for p in processes:
            try:
                t = p.cpu_times()
                used[p.pid] = t.user + t.system
            except psutil.NoSuchProcess:
                continue
        return used

    def sample(self) -> CpuSample:
        t = self.me.cpu_times()
        machine = psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return CpuSample(
            time.perf_counter(),
            t.user + t.system,
            self._tree(self.server),
            self._tree(self.postmaster),
            busy,
        )

    @staticmethod
    def _delta(before: dict[int, float], after: dict[int, float]) -> float:
        # A process started during the phase counts from zero; one that ended is lost
        # (pools keep their connections, so PostgreSQL's backends stay).
        return sum(v - before.get(pid, 0.0) for pid, v in after.items())

    def used(self, before: CpuSample, after: CpuSample) -> CpuUse:
        wall = after.wall - before.wall
        client = after.client - before.client
        server = self._delta(before.server, after.server)
        postgres = self._delta(before.postgres, after.postgres)
        busy = after.busy - before.busy
        cores = os.cpu_count() or 1
        return CpuUse(
            wall,
            client,
            server,
            postgres,
            max(busy - client - server - postgres, 0.0),
            max(cores * wall - busy, 0.0),
        )

    def describe(self, use: CpuUse) -> str:
        cores = os.cpu_count() or 1

        def part(name: str, seconds: float) -> str:
            return f"{name} {seconds:.1f} s ({seconds / use.wall:.2f} cores)"

        return (
            f"CPU over {use.wall:.1f} s wall ({cores} cores = {cores * use.wall:.0f} core-s): "
            + ", ".join(
                [
                    part("load generator", use.client),
                    part("API server", use.server),
                    part("PostgreSQL" if self.postmaster else "PostgreSQL (n/a)", use.postgres),
                    part("everything else (other people's work too)", use.other),
                ]
            )
            + f"; idle {use.idle:.1f} core-s"
        )


class LoopLag:
    """How late this process's event loop wakes a 5 ms sleeper: the share of a measured
    latency that may be the load generator's own queueing, not the server's."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            self.lags.append((time.perf_counter() - started - 0.005) * 1000)

    def __enter__(self) -> "LoopLag":
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def describe(self) -> str:
        return (
            f"load generator's event-loop lag p50 {_pct(self.lags, 0.5):.1f} ms, "
            f"p99 {_pct(self.lags, 0.99):.1f} ms"
        )


@dataclass
class Tally:
    slot_ms: list[float] = field(default_factory=list)
    book_ms: list[float] = field(default_factory=list)
    slots_listed: list[int] = field(default_factory=list)
    slot_status: Counter[int] = field(default_factory=Counter)
    book_status: Counter[int] = field(default_factory=Counter)
    conflicts: Counter[str] = field(default_factory=Counter)
    no_open_slot: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    wall: float = 0.0

    @property
    def booked(self) -> int:
        return self.book_status[201]


# --- The API's load -----------------------------------------------------------------------


@dataclass
class Athlete:
    id: uuid.UUID
    client: httpx.AsyncClient
    zone: str


def _client(base_url: str, token: str) -> httpx.AsyncClient:
    # One client and keep-alive connection per athlete: what 200 people's apps would hold,
    # and no shared pool to scan for a free connection on every request.
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token}"},
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        timeout=httpx.Timeout(120.0),
    )


async def _book(athlete: Athlete, body: dict[str, str], tally: Tally) -> None:
    started = time.perf_counter()
    response = await athlete.client.post("/scheduling/sessions/book", json=body)
    tally.book_ms.append((time.perf_counter() - started) * 1000)
    tally.book_status[response.status_code] += 1
    if response.status_code == 409:
        tally.conflicts[orjson.loads(response.content).get("code", "?")] += 1


async def _mixed_athlete(
    athlete: Athlete, coaches: list[Coach], deadline: float, tally: Tally, rng: random.Random
) -> None:
    while time.perf_counter() < deadline:
        coach = rng.choice(coaches)
        now = datetime.now(UTC)
        params = {
            "from": now.isoformat(),
            "to": (now + timedelta(days=RANGE_DAYS)).isoformat(),
            "tz": athlete.zone,
        }
        try:
            started = time.perf_counter()
            response = await athlete.client.get(
                f"/scheduling/availability/{coach.id}", params=params
            )
            elapsed = (time.perf_counter() - started) * 1000
            tally.slot_status[response.status_code] += 1
            if response.status_code != 200:
                continue
            tally.slot_ms.append(elapsed)
            slots = orjson.loads(response.content)["slots"]
            tally.slots_listed.append(len(slots))
            if not slots:
                tally.no_open_slot += 1
                continue
            slot = rng.choice(slots[:PICK_FROM_FIRST])
            body = {
                "coach_id": str(coach.id),
                "session_type_id": slot["session_type_id"],
                "start": slot["start"],
            }
            await _book(athlete, body, tally)
        except httpx.HTTPError as exc:
            tally.errors[type(exc).__name__] += 1


async def mixed_phase(athletes: list[Athlete], coaches: list[Coach], seconds: float) -> Tally:
    tally = Tally()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(
            _mixed_athlete(a, coaches, deadline, tally, random.Random(i))
            for i, a in enumerate(athletes)
        )
    )
    tally.wall = time.perf_counter() - started
    return tally


def free_starts(coaches: list[Coach], not_before: datetime) -> list[tuple[Coach, datetime]]:
    """Whole-hour starts inside each coach's hours: offered, and never overlapping one
    another (45 min + 15 min buffer = one hour), interleaved across coaches."""
    per_coach = []
    for coach in coaches:
        zone = ZoneInfo(coach.zone)
        today = datetime.now(zone).date()
        starts = []
        for day in range(RANGE_DAYS):
            d: date = today + timedelta(days=day)
            for hour in range(DAY_START, DAY_END):
                start = datetime(d.year, d.month, d.day, hour, tzinfo=zone).astimezone(UTC)
                if (
                    start + timedelta(minutes=DURATION_MIN)
                    <= datetime(d.year, d.month, d.day, DAY_END, tzinfo=zone).astimezone(UTC)
                    and start >= not_before
                ):
                    starts.append((coach, start))
        per_coach.append(starts)
    return [s for group in itertools.zip_longest(*per_coach) for s in group if s is not None]


async def book_only_phase(
    athletes: list[Athlete], coaches: list[Coach], seconds: float
) -> tuple[Tally, int]:
    # Ten minutes past the notice: no start goes stale during the phase.
    starts = free_starts(coaches, datetime.now(UTC) + timedelta(minutes=NOTICE_MIN + 10))
    queue = iter(starts)
    tally = Tally()
    started = time.perf_counter()
    deadline = started + seconds

    async def run(athlete: Athlete) -> None:
        while time.perf_counter() < deadline:
            picked = next(queue, None)
            if picked is None:
                return
            coach, start = picked
            body = {
                "coach_id": str(coach.id),
                "session_type_id": str(coach.session_type_id),
                "start": start.isoformat(),
            }
            try:
                await _book(athlete, body, tally)
            except httpx.HTTPError as exc:
                tally.errors[type(exc).__name__] += 1

    await asyncio.gather(*(run(a) for a in athletes))
    tally.wall = time.perf_counter() - started
    return tally, len(starts)


async def quiet_probe(athlete: Athlete, coaches: list[Coach], queries: int) -> list[float]:
    latencies = []
    for i in range(queries):
        coach = coaches[i % len(coaches)]
        now = datetime.now(UTC)
        params = {
            "from": now.isoformat(),
            "to": (now + timedelta(days=RANGE_DAYS)).isoformat(),
            "tz": athlete.zone,
        }
        started = time.perf_counter()
        response = await athlete.client.get(f"/scheduling/availability/{coach.id}", params=params)
        latencies.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return latencies


# --- The bare baseline --------------------------------------------------------------------

BARE_BLOCK = (
    "INSERT INTO coach_blocks (id, tenant_id, coach_id, session_type_id, starts_at, ends_at, "
    "blocked, capacity) VALUES ($1, $2, $3, $4, $5, $6, $7, 1)"
)
BARE_SESSION = (
    "INSERT INTO coaching_sessions (id, tenant_id, block_id, coach_id, athlete_id, "
    "session_type_id, starts_at, ends_at, status, booked_by) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'scheduled', $5)"
)
BARE_EVENT = (
    "INSERT INTO outbox_events (id, tenant_id, event_type, aggregate_type, aggregate_id, "
    "payload) VALUES ($1, $2, 'session.scheduled', 'coaching_session', $3, $4)"
)


@dataclass
class Bare:
    booked: int
    failed: Counter[str]
    wall: float
    latencies: list[float]
    pool_size: int
    cpu: str


async def bare_phase(
    database_url: str, pool_size: int, seeded: Seeded, seconds: float, concurrency: int, cpu: Cpu
) -> Bare:
    """The booking's writes, nothing else: free whole hours of the mixed phase's coaches,
    months after everything else (so they never meet), handed out in turn."""
    pool = await asyncpg.create_pool(
        asyncpg_dsn(database_url), min_size=pool_size, max_size=pool_size
    )
    base = (datetime.now(UTC) + timedelta(days=BARE_OFFSET_DAYS)).replace(
        minute=0, second=0, microsecond=0
    )
    counter = itertools.count()
    failed: Counter[str] = Counter()
    latencies: list[float] = []
    booked = 0
    tenant = seeded.tenant

    async def one(rng: random.Random) -> None:
        n = next(counter)
        coach = seeded.coaches[n % len(seeded.coaches)]
        start = base + timedelta(hours=n // len(seeded.coaches))
        ends = start + timedelta(minutes=DURATION_MIN)
        block_id, session_id = uuid.uuid4(), uuid.uuid4()
        athlete = rng.choice(seeded.athletes)
        payload = json.dumps(
            {
                "session_id": str(session_id),
                "coach_id": str(coach.id),
                "athlete_id": str(athlete),
                "session_type_id": str(coach.session_type_id),
                "title": "Private lesson",
                "location": "Court 1",
                "starts_at": start.isoformat(),
                "ends_at": ends.isoformat(),
                "booked_by": str(athlete),
            }
        )
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(TENANT_CONTEXT_SQL, str(tenant), str(athlete))
            await conn.execute(
                BARE_BLOCK,
                block_id,
                tenant,
                coach.id,
                coach.session_type_id,
                start,
                ends,
                asyncpg.Range(start, ends + timedelta(minutes=BUFFER_AFTER_MIN), upper_inc=False),
            )
            await conn.execute(
                BARE_SESSION,
                session_id,
                tenant,
                block_id,
                coach.id,
                athlete,
                coach.session_type_id,
                start,
                ends,
            )
            await conn.execute(BARE_EVENT, uuid.uuid4(), tenant, str(session_id), payload)

    async def worker(i: int, deadline: float) -> None:
        nonlocal booked
        rng = random.Random(i)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                await one(rng)
            except asyncpg.PostgresError as exc:
                failed[type(exc).__name__] += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            booked += 1

    try:
        before = cpu.sample()
        started = time.perf_counter()
        await asyncio.gather(*(worker(i, started + seconds) for i in range(concurrency)))
        wall = time.perf_counter() - started
        # Before the pool closes: its backends' CPU is lost once they exit.
        used = cpu.describe(cpu.used(before, cpu.sample()))
    finally:
        await pool.close()
    return Bare(booked, failed, wall, latencies, pool_size, used)


# --- Counting double bookings -------------------------------------------------------------

LIVE = "(s.status = 'scheduled' OR (s.status = 'held' AND s.hold_expires_at > now()))"
CHECKS = {
    # Live blocks of one coach whose blocked ranges overlap, as pairs.
    "overlapping live block pairs": f"""
        WITH live AS (
            SELECT b.* FROM coach_blocks b
            WHERE EXISTS (SELECT 1 FROM coaching_sessions s WHERE s.block_id = b.id AND {LIVE}))
        SELECT count(*) FROM live a JOIN live b
          ON a.tenant_id = b.tenant_id AND a.coach_id = b.coach_id AND a.id < b.id
         AND a.blocked && b.blocked""",
    # Live places beyond their block's capacity.
    "places beyond a block's capacity": f"""
        SELECT coalesce(sum(places - capacity), 0) FROM (
            SELECT b.capacity, count(*) AS places
            FROM coach_blocks b JOIN coaching_sessions s ON s.block_id = b.id
            WHERE {LIVE} GROUP BY b.id, b.capacity) AS counted
        WHERE places > capacity""",
    # Not trusting the blocks: live sessions of one coach (in different blocks, or in
    # none) whose buffered times overlap an earlier one's.
    "live sessions overlapping another's": f"""
        WITH ranges AS (
            SELECT DISTINCT s.tenant_id, s.coach_id, coalesce(s.block_id, s.id) AS k,
                   s.starts_at - make_interval(mins => t.buffer_before_minutes) AS lo,
                   s.ends_at + make_interval(mins => t.buffer_after_minutes) AS hi
            FROM coaching_sessions s JOIN session_types t ON t.id = s.session_type_id
            WHERE {LIVE}),
        ordered AS (
            SELECT lo, max(hi) OVER (PARTITION BY tenant_id, coach_id ORDER BY lo, k
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_hi
            FROM ranges)
        SELECT count(*) FROM ordered WHERE lo < prev_hi""",
}


async def count_rows(dsn: str, tenant: uuid.UUID) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        found = {name: int(await conn.fetchval(sql)) for name, sql in CHECKS.items()}
        found["scheduled sessions"] = await conn.fetchval(
            "SELECT count(*) FROM coaching_sessions WHERE tenant_id = $1 AND status = 'scheduled'",
            tenant,
        )
        found["live sessions without a block"] = await conn.fetchval(
            f"SELECT count(*) FROM coaching_sessions s WHERE s.block_id IS NULL AND {LIVE}"
        )
        found["session.scheduled events"] = await conn.fetchval(
            "SELECT count(*) FROM outbox_events WHERE tenant_id = $1 "
            "AND event_type = 'session.scheduled'",
            tenant,
        )
    finally:
        await conn.close()
    return found


# --- The run ------------------------------------------------------------------------------


def _describe(name: str, tally: Tally) -> None:
    rate = tally.booked / tally.wall if tally.wall else 0.0
    conflicts = ", ".join(f"{code} {n}" for code, n in tally.conflicts.most_common()) or "none"
    other = {s: n for s, n in tally.book_status.items() if s not in (201, 409)}
    print(
        f"  {name}: {tally.booked} bookings in {tally.wall:.1f} s = {rate:.1f} bookings/s; "
        f"409 {tally.book_status[409]} ({conflicts}); other statuses {other or 'none'}; "
        f"client errors {dict(tally.errors) or 'none'}"
    )
    if tally.slot_ms or tally.slot_status:
        bad = {s: n for s, n in tally.slot_status.items() if s != 200}
        listed = statistics.median(tally.slots_listed) if tally.slots_listed else 0
        print(
            f"    slot queries (four weeks): {len(tally.slot_ms)} = "
            f"{len(tally.slot_ms) / tally.wall:.1f}/s, {_latencies(tally.slot_ms)}; "
            f"median {listed:.0f} open slots listed; none open {tally.no_open_slot}; "
            f"non-200 {bad or 'none'}"
        )
    print(f"    book requests: {len(tally.book_ms)}, {_latencies(tally.book_ms)}")


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


async def run(stack: Stack, seeded: Seeded, api_url: str, server_pid: int) -> None:
    settings = stack.settings
    rng = random.Random(3)
    athletes = [
        Athlete(
            a,
            _client(
                api_url,
                issue_access_token(
                    settings, AccessClaims(a, seeded.tenant, session_of(a)), role="ATHLETE"
                ),
            ),
            rng.choice(VIEWER_ZONES),
        )
        for a in seeded.athletes
    ]
    pid_file = stack.workdir / "pgdata" / "postmaster.pid"
    postmaster = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
    cpu = Cpu(server_pid, postmaster)
    try:
        # Warm-up: connections opened, the API's caches (tokens, roles, sessions) and
        # compiled statements filled.
        warmup = await mixed_phase(athletes, seeded.coaches, WARMUP_SECONDS)

        print(f"1. mixed: {ATHLETES} athletes x (slot query, then book), {SECONDS:.0f} s")
        before = cpu.sample()
        with LoopLag() as lag:
            mixed = await mixed_phase(athletes, seeded.coaches, SECONDS)
        use = cpu.used(before, cpu.sample())
        _describe("product", mixed)
        print(f"    {cpu.describe(use)}")
        requests = len(mixed.slot_ms) + len(mixed.book_ms)
        if requests:
            print(
                f"    API server CPU per request {use.server / requests * 1000:.1f} ms; one "
                f"worker (one core at most) can serve ~{requests / use.server:.0f} requests/s "
                f"of this mix, whatever the concurrency"
            )
        print(f"    {lag.describe()}")

        quiet = await quiet_probe(athletes[0], seeded.coaches, QUIET_QUERIES)
        print(
            f"2. quiet: the same slot query, one client, {QUIET_QUERIES} in a row: "
            f"{_latencies(quiet)}"
        )

        print(f"3. book only: {ATHLETES} athletes booking free starts, {BOOK_ONLY_SECONDS:.0f} s")
        before = cpu.sample()
        with LoopLag() as lag:
            book_only, offered = await book_only_phase(
                athletes, seeded.book_only, BOOK_ONLY_SECONDS
            )
        use = cpu.used(before, cpu.sample())
        _describe("product", book_only)
        if book_only.booked >= offered:
            print(f"    (all {offered} free starts were booked: the phase ran out of them)")
        print(f"    {cpu.describe(use)}")
        if book_only.book_ms:
            print(
                f"    API server CPU per booking {use.server / len(book_only.book_ms) * 1000:.1f} "
                f"ms"
            )
        print(f"    {lag.describe()}")
    finally:
        await asyncio.gather(*(a.client.aclose() for a in athletes))

    pool_size = settings.db_pool_size + settings.db_max_overflow
    print(
        f"4. bare: {ATHLETES} concurrent asyncpg transactions (tenant context, block, session, "
        f"outbox event) on a pool of {pool_size}, {SECONDS:.0f} s"
    )
    bare = await bare_phase(settings.database_url, pool_size, seeded, SECONDS, ATHLETES, cpu)
    bare_rate = bare.booked / bare.wall
    print(
        f"  bare: {bare.booked} bookings in {bare.wall:.1f} s = {bare_rate:.1f} bookings/s, "
        f"failed {dict(bare.failed) or 'none'}; transaction {_latencies(bare.latencies)}"
    )
    print(f"    {bare.cpu}")

    found = await count_rows(stack.superuser_dsn, seeded.tenant)
    block_level = found["overlapping live block pairs"] + found["places beyond a block's capacity"]
    session_level = found["live sessions overlapping another's"]
    double = max(block_level, session_level) + found["live sessions without a block"]
    answered = warmup.booked + mixed.booked + book_only.booked
    print(
        "from the database: "
        + ", ".join(f"{name} {n}" for name, n in found.items())
        + f"; the API's sessions {found['scheduled sessions'] - bare.booked} rows for "
        f"{answered} 201s (warm-up included)"
    )

    rate = mixed.booked / mixed.wall if mixed.wall else 0.0
    ratio = rate / bare_rate if bare_rate else 0.0
    p99 = _pct(mixed.slot_ms, 0.99)
    book_only_rate = book_only.booked / book_only.wall if book_only.wall else 0.0
    print(
        f"ratios: mixed {rate:.1f} / bare {bare_rate:.1f} = {ratio:.2f}; book only "
        f"{book_only_rate:.1f} / bare = {book_only_rate / bare_rate if bare_rate else 0:.2f}"
    )
    print(
        f"targets: 0 double bookings ({_met(double == 0)}, {double}); bookings >= "
        f"{TARGET_RATIO} of bare ({_met(ratio >= TARGET_RATIO)}, {ratio:.2f}); slot query p99 "
        f"<= {TARGET_P99_MS:.0f} ms ({_met(p99 <= TARGET_P99_MS)}, {p99:.1f} ms under "
        f"{ATHLETES} concurrent athletes; {_pct(quiet, 0.99):.1f} ms alone)"
    )
    print(
        f"booking: {rate:.0f} bookings/s, {ratio:.2f} of bare, slots p99 {p99:.0f} ms, "
        f"double bookings {double}"
    )


def main() -> None:
    stack = Stack()
    try:
        started = time.perf_counter()
        seeded = asyncio.run(seed(stack.superuser_dsn))
        print(
            f"seeded 1 tenant, {COACHES} coaches (+{BOOK_ONLY_COACHES} for the book-only phase) "
            f"with a private type ({DURATION_MIN} min + {BUFFER_AFTER_MIN} min buffer, "
            f"{NOTICE_MIN} min notice) and hours {DAY_START}:00-{DAY_END}:00 daily for "
            f"{RANGE_DAYS} days in {len(COACH_ZONES)} zones, {ATHLETES} athletes, in "
            f"{time.perf_counter() - started:.1f} s"
        )
        api_port = free_port()
        server = stack.serve_api(
            api_port,
            env={
                "RATE_LIMIT_MAX_PER_IP": "100000000",
                "RATE_LIMIT_MAX_PER_USER": "100000000",
                "RATE_LIMIT_MAX_PER_TENANT": "100000000",
                "RATE_LIMIT_BURST": "1000000",  # in units of the steady rate
                "METRICS_PORT": str(free_port()),
            },
        )
        print(
            f"one uvicorn API worker, PostgreSQL and the load generator (httpx, one client per "
            f"athlete, this process) share this machine's {os.cpu_count()} cores"
        )
        uvloop.run(run(stack, seeded, f"http://127.0.0.1:{api_port}", server.pid))
    finally:
        stack.close()


if __name__ == "__main__":
    main()
