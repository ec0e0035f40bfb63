"""Reminders 24 h and 1 h before each scheduled session: sent by the scheduler's job once
each (across restarts, with two schedulers at once), never for cancelled sessions; the
scan across tenants is the relay's alone (relay role + runtime role, real PostgreSQL)."""

import asyncio
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import pytest

from app.bookings.reminders import due_reminders, send_due_reminders, send_reminder
from app.infra import aws
from app.infra.db import Database, asyncpg_dsn
from tests.factories import Account, add_member, register_tenant
from tests.operator.conftest import onboard_tenant, role_dsn
from workers.scheduler import JOBS, JobContext, run_job_once

REMINDER_JOB = next(job for job in JOBS if job.name == "session-reminders")


# --- Test data: sessions as the booking service leaves them (rows, not its API) ---


@dataclass
class Club:
    admin: Account
    coach: Account
    athlete: Account

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.admin.tenant_id


async def make_club(client) -> Club:
    admin = await register_tenant(client)
    return Club(
        admin, await add_member(client, admin, "COACH"), await add_member(client, admin, "ATHLETE")
    )


async def insert_session(
    superuser_conn: asyncpg.Connection,
    club: Club,
    *,
    starts_in: timedelta,
    minutes: int = 30,
    status: str = "scheduled",
    title: str = "Private lesson",
    location: str | None = "Court 1",
    athlete: Account | None = None,
) -> uuid.UUID:
    """A session of the club's coach starting `starts_in` from the database's now: its
    session type, its block (unless cancelled: a cancellation frees the time) and the
    athlete's place."""
    athlete = athlete or club.athlete
    starts_at: datetime = await superuser_conn.fetchval("SELECT now() + $1::interval", starts_in)
    ends_at = starts_at + timedelta(minutes=minutes)
    type_id = await superuser_conn.fetchval(
        "INSERT INTO session_types (tenant_id, coach_id, title, duration_minutes, location) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING id",
        club.tenant_id,
        club.coach.user_id,
        title,
        minutes,
        location,
    )
    block_id = None
    if status != "cancelled":
        block_id = await superuser_conn.fetchval(
            "INSERT INTO coach_blocks (tenant_id, coach_id, session_type_id, starts_at, "
            "ends_at, blocked, capacity) VALUES ($1, $2, $3, $4, $5, tstzrange($4, $5), 1) "
            "RETURNING id",
            club.tenant_id,
            club.coach.user_id,
            type_id,
            starts_at,
            ends_at,
        )
    return await superuser_conn.fetchval(
        "INSERT INTO coaching_sessions (tenant_id, block_id, coach_id, athlete_id, "
        "session_type_id, starts_at, ends_at, status, hold_expires_at, booked_by, "
        "cancelled_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text, "
        "CASE WHEN $8::text = 'held' THEN now() + interval '10 minutes' END, $4, "
        "CASE WHEN $8::text = 'cancelled' THEN now() END) RETURNING id",
        club.tenant_id,
        block_id,
        club.coach.user_id,
        athlete.user_id,
        type_id,
        starts_at,
        ends_at,
        status,
    )


async def cancel(superuser_conn: asyncpg.Connection, session_id: uuid.UUID) -> None:
    """What a cancellation leaves: the session cancelled, its block gone."""
    block_id = await superuser_conn.fetchval(
        "SELECT block_id FROM coaching_sessions WHERE id = $1", session_id
    )
    await superuser_conn.execute(
        "UPDATE coaching_sessions SET status = 'cancelled', cancelled_at = now(), "
        "block_id = NULL WHERE id = $1",
        session_id,
    )
    await superuser_conn.execute("DELETE FROM coach_blocks WHERE id = $1", block_id)


async def move_to(superuser_conn: asyncpg.Connection, session_id: uuid.UUID, starts_in: timedelta):
    """Time passing, as far as the reminders can tell: the session now starts `starts_in`
    from now."""
    await superuser_conn.execute(
        "UPDATE coaching_sessions SET starts_at = now() + $2::interval, "
        "ends_at = now() + $2::interval + (ends_at - starts_at) WHERE id = $1",
        session_id,
        starts_in,
    )


async def reminders_of(superuser_conn: asyncpg.Connection, session_id: uuid.UUID) -> list[dict]:
    """The session's reminder events in the outbox, oldest first."""
    rows = await superuser_conn.fetch(
        "SELECT tenant_id, payload FROM outbox_events WHERE event_type = 'session.reminder' "
        "AND aggregate_id = $1 ORDER BY created_at",
        str(session_id),
    )
    return [json.loads(r["payload"]) | {"tenant": r["tenant_id"]} for r in rows]


async def kinds_of(superuser_conn: asyncpg.Connection, session_id: uuid.UUID) -> list[str]:
    return [r["kind"] for r in await reminders_of(superuser_conn, session_id)]


async def recorded(superuser_conn: asyncpg.Connection, session_id: uuid.UUID) -> list[str]:
    rows = await superuser_conn.fetch(
        "SELECT kind FROM session_reminders WHERE session_id = $1 ORDER BY created_at",
        session_id,
    )
    return [r["kind"] for r in rows]


# --- Fixtures: the scheduler's connections ---


@pytest.fixture
async def relay_conn(settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(settings.relay_database_url))
    yield conn
    await conn.close()


@pytest.fixture
async def ctx(settings, relay_conn, db) -> AsyncIterator[JobContext]:
    async with aws.client(settings, "s3") as s3:
        yield JobContext(conn=relay_conn, settings=settings, db=db, s3=s3)


@pytest.fixture
async def club(client) -> Club:
    return await make_club(client)


# --- The windows ---


async def test_a_session_a_day_ahead_gets_the_24h_reminder_once(superuser_conn, club, ctx):
    session_id = await insert_session(
        superuser_conn, club, starts_in=timedelta(hours=23), title="Serve clinic"
    )

    assert await run_job_once(ctx, REMINDER_JOB) >= 1
    await run_job_once(ctx, REMINDER_JOB)

    [reminder] = await reminders_of(superuser_conn, session_id)
    starts_at, ends_at = await superuser_conn.fetchrow(
        "SELECT starts_at, ends_at FROM coaching_sessions WHERE id = $1", session_id
    )
    assert reminder == {
        "tenant": club.tenant_id,
        "session_id": str(session_id),
        "kind": "24h",
        "coach_id": str(club.coach.user_id),
        "athlete_id": str(club.athlete.user_id),
        "session_type_id": reminder["session_type_id"],
        "title": "Serve clinic",
        "location": "Court 1",
        "starts_at": starts_at.isoformat(),
        "ends_at": ends_at.isoformat(),
    }
    assert datetime.fromisoformat(reminder["starts_at"]) == starts_at
    assert await recorded(superuser_conn, session_id) == ["24h"]


async def test_a_session_booked_30_minutes_ahead_gets_only_the_1h_reminder(
    superuser_conn, club, ctx
):
    session_id = await insert_session(superuser_conn, club, starts_in=timedelta(minutes=30))

    await run_job_once(ctx, REMINDER_JOB)
    await run_job_once(ctx, REMINDER_JOB)

    assert await kinds_of(superuser_conn, session_id) == ["1h"]
    assert await recorded(superuser_conn, session_id) == ["1h"]


async def test_the_1h_reminder_follows_the_24h_one(superuser_conn, club, ctx):
    session_id = await insert_session(superuser_conn, club, starts_in=timedelta(hours=3))
    await run_job_once(ctx, REMINDER_JOB)
    assert await kinds_of(superuser_conn, session_id) == ["24h"]

    await move_to(superuser_conn, session_id, timedelta(minutes=50))
    await run_job_once(ctx, REMINDER_JOB)
    await run_job_once(ctx, REMINDER_JOB)

    assert await kinds_of(superuser_conn, session_id) == ["24h", "1h"]


async def test_no_reminder_outside_the_windows(superuser_conn, club, ctx):
    later = await insert_session(superuser_conn, club, starts_in=timedelta(hours=25))
    started = await insert_session(superuser_conn, club, starts_in=timedelta(minutes=-5))

    await run_job_once(ctx, REMINDER_JOB)

    assert await kinds_of(superuser_conn, later) == []
    assert await kinds_of(superuser_conn, started) == []
    # Once the 1 h reminder's window has opened, the 24 h one is never due again.
    await move_to(superuser_conn, later, timedelta(minutes=59))
    assert await send_reminder(ctx.db, club.tenant_id, later, "24h") is False
    await run_job_once(ctx, REMINDER_JOB)
    assert await kinds_of(superuser_conn, later) == ["1h"]


# --- Never for cancelled sessions ---


async def test_never_for_a_cancelled_session_or_a_hold(superuser_conn, club, ctx):
    cancelled = await insert_session(
        superuser_conn, club, starts_in=timedelta(minutes=40), status="cancelled"
    )
    held = await insert_session(superuser_conn, club, starts_in=timedelta(hours=5), status="held")

    await run_job_once(ctx, REMINDER_JOB)

    assert await kinds_of(superuser_conn, cancelled) == []
    assert await kinds_of(superuser_conn, held) == []
    assert await recorded(superuser_conn, cancelled) == []


async def test_a_session_cancelled_after_the_listing_gets_no_reminder(
    superuser_conn, club, relay_conn, db
):
    session_id = await insert_session(superuser_conn, club, starts_in=timedelta(hours=2))
    due = [d for d in await due_reminders(relay_conn, 10_000) if d.session_id == session_id]
    assert [d.kind for d in due] == ["24h"]

    await cancel(superuser_conn, session_id)
    assert await send_reminder(db, due[0].tenant_id, session_id, "24h") is False

    assert await kinds_of(superuser_conn, session_id) == []
    assert await recorded(superuser_conn, session_id) == []


# --- Exactly once ---


async def test_exactly_once_across_new_scheduler_connections(settings, superuser_conn, club, ctx):
    session_id = await insert_session(superuser_conn, club, starts_in=timedelta(minutes=45))
    await run_job_once(ctx, REMINDER_JOB)
    assert await kinds_of(superuser_conn, session_id) == ["1h"]

    # A restarted scheduler: new relay connection, new runtime pool, nothing in memory.
    relay = await asyncpg.connect(asyncpg_dsn(settings.relay_database_url))
    db = Database(settings.database_url, pool_size=1, max_overflow=0)
    try:
        restarted = JobContext(conn=relay, settings=settings, db=db, s3=ctx.s3)
        await run_job_once(restarted, REMINDER_JOB)
        await run_job_once(restarted, REMINDER_JOB)
    finally:
        await db.dispose()
        await relay.close()

    assert await kinds_of(superuser_conn, session_id) == ["1h"]
    assert await send_reminder(ctx.db, club.tenant_id, session_id, "1h") is False
    assert await kinds_of(superuser_conn, session_id) == ["1h"]


async def test_two_schedulers_at_once_send_each_reminder_once(settings, superuser_conn, club):
    """Each with its own connections, and without the advisory lock that normally keeps
    the second one out: the database alone keeps each reminder single."""
    sessions = [
        await insert_session(superuser_conn, club, starts_in=timedelta(hours=2, minutes=40 * i))
        for i in range(8)
    ] + [await insert_session(superuser_conn, club, starts_in=timedelta(minutes=20))]
    relays = [await asyncpg.connect(asyncpg_dsn(settings.relay_database_url)) for _ in range(2)]
    dbs = [Database(settings.database_url, pool_size=1, max_overflow=0) for _ in range(2)]
    try:
        await asyncio.gather(*(send_due_reminders(r, d) for r, d in zip(relays, dbs, strict=True)))
    finally:
        for d in dbs:
            await d.dispose()
        for r in relays:
            await r.close()

    for session_id in sessions[:-1]:
        assert await kinds_of(superuser_conn, session_id) == ["24h"]
    assert await kinds_of(superuser_conn, sessions[-1]) == ["1h"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _start_scheduler(log_path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "courtside.cli",
        "worker",
        "scheduler",
        env={**os.environ, "METRICS_PORT": str(_free_port()), "LOG_LEVEL": "INFO"},
        stdout=log_path.open("wb"),
        stderr=asyncio.subprocess.STDOUT,
    )


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    await process.wait()


def _reminder_runs(log_path) -> int:
    """How many times the process logged a finished run of the reminder job."""
    return sum(
        1
        for line in log_path.read_text(errors="replace").splitlines()
        if "job_ran" in line and REMINDER_JOB.name in line
    )


@pytest.mark.timeout(180)
async def test_the_scheduler_process_sends_a_reminder_once_across_a_restart(
    superuser_conn, club, tmp_path
):
    """`courtside worker scheduler` as deployed, stopped and started again."""
    session_id = await insert_session(superuser_conn, club, starts_in=timedelta(hours=6))

    first_log = tmp_path / "first.log"
    first = await _start_scheduler(first_log)
    try:
        for _ in range(300):  # a deadline, not a timing assertion
            if await kinds_of(superuser_conn, session_id) or first.returncode is not None:
                break
            await asyncio.sleep(0.2)
        assert await kinds_of(superuser_conn, session_id) == ["24h"], first_log.read_text()[-3000:]
    finally:
        await _stop(first)

    second_log = tmp_path / "second.log"
    second = await _start_scheduler(second_log)
    try:
        for _ in range(300):
            if _reminder_runs(second_log) or second.returncode is not None:
                break
            await asyncio.sleep(0.2)
        assert _reminder_runs(second_log) >= 1, second_log.read_text()[-3000:]
    finally:
        await _stop(second)

    assert await kinds_of(superuser_conn, session_id) == ["24h"]
    assert await recorded(superuser_conn, session_id) == ["24h"]


# --- The scan across tenants is the relay's alone ---


async def test_the_scan_returns_ids_only_and_honours_its_limit(superuser_conn, club, relay_conn):
    for hours in (3, 4):
        await insert_session(superuser_conn, club, starts_in=timedelta(hours=hours))
    rows = await relay_conn.fetch("SELECT * FROM due_session_reminders(1)")
    assert len(rows) == 1
    assert list(rows[0].keys()) == ["tenant_id", "session_id", "kind"]
    mine = [d for d in await due_reminders(relay_conn, 10_000) if d.tenant_id == club.tenant_id]
    assert sorted(d.kind for d in mine) == ["24h", "24h"]


async def test_the_relay_role_still_reads_no_sessions(relay_conn, club, superuser_conn):
    await insert_session(superuser_conn, club, starts_in=timedelta(hours=3))
    for table in ("coaching_sessions", "session_reminders", "session_types"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await relay_conn.fetch(f"SELECT * FROM {table}")


async def test_the_runtime_role_may_not_call_the_scan(superuser_conn, club, client, runtime_conn):
    await insert_session(superuser_conn, club, starts_in=timedelta(hours=3))
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await runtime_conn.fetch("SELECT * FROM due_session_reminders(100)")
    # Nor does the scan's policy show this tenant's sessions to another tenant.
    other = await register_tenant(client)
    async with runtime_conn.transaction():
        await runtime_conn.execute(
            "SELECT set_config('app.tenant_id', $1, true)", str(other.tenant_id)
        )
        assert await runtime_conn.fetchval("SELECT count(*) FROM coaching_sessions") == 0


async def test_a_tenants_own_database_role_may_not_call_the_scan(
    settings, superuser_conn, club, tmp_path
):
    await insert_session(superuser_conn, club, starts_in=timedelta(hours=3))
    _, secret = await onboard_tenant(settings, tmp_path)
    conn = await asyncpg.connect(role_dsn(settings, secret["username"], secret["password"]))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM due_session_reminders(100)")
        # Its own tenant has no sessions; the victim's stay out of sight.
        assert await conn.fetchval("SELECT count(*) FROM coaching_sessions") == 0
    finally:
        await conn.close()
