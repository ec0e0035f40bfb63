"""Bookings racing for the same time, all at once over the API: the database's exclusion
constraint and the clinic's row lock decide, and every loser gets a 409 problem, never a
5xx."""

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable

import pytest

from tests.factories import add_member, register_tenant
from tests.test_bookings import PROBLEM, api, at, book, hold, offer, session_type

__all__ = ["api"]  # a fixture, shared with tests/test_bookings.py


@pytest.fixture(scope="module")
async def crowd(api) -> dict:
    """An organisation with a coach free all day (UTC) and twenty athletes."""
    admin = await register_tenant(api, "Crowd")
    coach = await add_member(api, admin, "COACH")
    await offer(api, coach)
    athletes = await asyncio.gather(*(add_member(api, admin, "ATHLETE") for _ in range(20)))
    return {"admin": admin, "coach": coach, "athletes": list(athletes)}


async def all_at_the_insert(conn, calls: list[Awaitable]) -> list:
    """Run `calls` at once, held at their insert into coach_blocks until every one is
    there, then let them all go: a race at the constraint however the event loop would
    have ordered them. `conn` (a superuser's) holds a SHARE lock on the table meanwhile,
    which row-locking reads pass and inserts wait for."""
    async with conn.transaction():
        await conn.execute("LOCK TABLE coach_blocks IN SHARE MODE")
        running = asyncio.gather(*calls)
        deadline = time.monotonic() + 30
        while await conn.fetchval(
            "SELECT count(*) FROM pg_locks"
            " WHERE relation = 'coach_blocks'::regclass AND NOT granted"
        ) < len(calls):
            assert time.monotonic() < deadline, "the bookings never reached their insert"
            await asyncio.sleep(0.01)
    return await running


def _tally(responses) -> Counter:
    for r in responses:
        if r.status_code != 201:
            assert r.headers["content-type"] == PROBLEM, r.text
    return Counter(r.status_code for r in responses)


async def test_fifty_concurrent_bookings_of_one_private_slot_give_exactly_one(
    api, crowd, superuser_conn
):
    coach, athletes = crowd["coach"], crowd["athletes"]
    lesson = await session_type(api, coach)
    start = at(30, 10)

    responses = await all_at_the_insert(
        superuser_conn,
        [book(api, athletes[i % len(athletes)], coach, lesson, start) for i in range(50)],
    )

    assert _tally(responses) == {201: 1, 409: 49}
    blocks = await superuser_conn.fetch(
        "SELECT id FROM coach_blocks WHERE coach_id = $1 AND starts_at = $2", coach.user_id, start
    )
    assert len(blocks) == 1
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM coaching_sessions WHERE coach_id = $1 AND starts_at = $2",
            coach.user_id,
            start,
        )
        == 1
    )


async def test_holds_and_bookings_of_overlapping_starts_racing_leave_one(
    api, crowd, superuser_conn
):
    coach, athletes = crowd["coach"], crowd["athletes"]
    lesson = await session_type(api, coach)
    # Any two of these hour-long sessions overlap.
    starts = [at(31, 10), at(31, 10, 15), at(31, 10, 30), at(31, 10, 45)]
    calls = [
        (hold if i % 2 else book)(api, athletes[i], coach, lesson, starts[i % len(starts)])
        for i in range(20)
    ]

    responses = await asyncio.gather(*calls)

    assert _tally(responses) == {201: 1, 409: 19}
    live = await superuser_conn.fetchval(
        "SELECT count(*) FROM coaching_sessions WHERE coach_id = $1"
        " AND starts_at >= $2 AND starts_at < $3 AND (status = 'scheduled'"
        " OR (status = 'held' AND hold_expires_at > now()))",
        coach.user_id,
        at(31, 0),
        at(32, 0),
    )
    assert live == 1


async def test_a_capacity_five_clinic_takes_exactly_five_of_twenty_concurrent_bookers(
    api, crowd, superuser_conn
):
    coach, athletes = crowd["coach"], crowd["athletes"]
    clinic = await session_type(api, coach, title="Clinic", capacity=5, duration_minutes=90)
    start = at(32, 10)

    # All twenty find no block yet and race to open it: one does, the others join it.
    responses = await all_at_the_insert(
        superuser_conn, [book(api, a, coach, clinic, start) for a in athletes]
    )

    assert _tally(responses) == {201: 5, 409: 15}
    booked = {r.json()["athlete_id"] for r in responses if r.status_code == 201}
    assert len(booked) == 5
    rows = await superuser_conn.fetch(
        "SELECT b.id, count(s.id) AS places FROM coach_blocks b"
        " JOIN coaching_sessions s ON s.block_id = b.id AND s.status = 'scheduled'"
        " WHERE b.coach_id = $1 AND b.starts_at = $2 GROUP BY b.id",
        coach.user_id,
        start,
    )
    assert [r["places"] for r in rows] == [5]


async def test_bookers_racing_for_an_expired_holds_slot_leave_one(api, crowd, superuser_conn):
    coach, athletes = crowd["coach"], crowd["athletes"]
    lesson = await session_type(api, coach)
    start = at(33, 10)
    held = await hold(api, athletes[0], coach, lesson, start)
    assert held.status_code == 201, held.text
    await superuser_conn.execute(
        "UPDATE coaching_sessions SET hold_expires_at = now() - interval '1 second'"
        " WHERE id = $1::uuid",
        held.json()["id"],
    )

    responses = await asyncio.gather(*(book(api, a, coach, lesson, start) for a in athletes[1:]))

    assert _tally(responses) == {201: 1, 409: 18}
    assert (
        await superuser_conn.fetchval(
            "SELECT status FROM coaching_sessions WHERE id = $1::uuid", held.json()["id"]
        )
        == "expired"
    )


async def test_two_sessions_swapping_times_at_once_never_fail_or_overlap(
    api, crowd, superuser_conn
):
    coach, (first, second) = crowd["coach"], crowd["athletes"][:2]
    lesson = await session_type(api, coach)
    a, b = at(34, 10), at(34, 12)
    one = (await book(api, first, coach, lesson, a)).json()
    two = (await book(api, second, coach, lesson, b)).json()

    responses = await asyncio.gather(
        api.post(
            f"/scheduling/sessions/{one['id']}/reschedule",
            headers=first.headers,
            json={"start": b.isoformat()},
        ),
        api.post(
            f"/scheduling/sessions/{two['id']}/reschedule",
            headers=second.headers,
            json={"start": a.isoformat()},
        ),
    )

    assert set(_tally(responses)) <= {200, 409}
    rows = await superuser_conn.fetch(
        "SELECT athlete_id, starts_at FROM coaching_sessions WHERE coach_id = $1"
        " AND status = 'scheduled' AND starts_at >= $2 AND starts_at < $3",
        coach.user_id,
        at(34, 0),
        at(35, 0),
    )
    # Each athlete still has one session, and no two share a time.
    assert sorted(str(r["athlete_id"]) for r in rows) == sorted(
        [str(first.user_id), str(second.user_id)]
    )
    assert len({r["starts_at"] for r in rows}) == 2


async def test_a_booking_held_up_behind_a_lock_gets_a_409_not_a_timeout(api, crowd, superuser_conn):
    """Whatever holds the time a booking needs for longer than the booking's lock timeout
    (here a lock on the whole table), the booking tries once more and then answers 409; it
    never runs into the statement timeout and a 500."""
    coach, athlete = crowd["coach"], crowd["athletes"][0]
    lesson = await session_type(api, coach)
    async with superuser_conn.transaction():
        await superuser_conn.execute("LOCK TABLE coach_blocks IN SHARE MODE")
        response = await book(api, athlete, coach, lesson, at(35, 10))
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == PROBLEM
    # Once the way is clear, the same booking goes through.
    assert (await book(api, athlete, coach, lesson, at(35, 10))).status_code == 201
