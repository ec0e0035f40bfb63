"""Holds, bookings, cancellations and reschedules over the API, each from the side of the
person acting, with their own token; the database looked at only to arrange time (a
hold's expiry) and to read what was written (blocks, the outbox)."""

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.auth.caller import Caller
from app.bookings import service
from app.infra.errors import NotFound
from app.tenants.models import Role
from tests.conftest import random_client_ip
from tests.factories import Account, add_member, register_tenant

PROBLEM = "application/problem+json"
# Day 0 of these tests: tomorrow, 00:00 UTC. Each test books on days of its own, so the
# module's tests can share one organisation and its coaches.
BASE = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return BASE + timedelta(days=day, hours=hour, minutes=minute)


@pytest.fixture(scope="module")
async def api(app) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the whole module, as `club` is: one organisation serves every test."""
    transport = httpx.ASGITransport(app=app, client=(random_client_ip(), 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://courtside.test") as c:
        yield c


async def offer(
    api: httpx.AsyncClient,
    coach: Account,
    *,
    hours: tuple[str, str] = ("00:00", "24:00"),
    time_zone: str = "UTC",
) -> None:
    """The coach's availability: `hours` every day of the week, in `time_zone`."""
    response = await api.post(
        "/scheduling/availability",
        headers=coach.headers,
        json={
            "time_zone": time_zone,
            "rules": [{"weekday": d, "start": hours[0], "end": hours[1]} for d in range(7)],
        },
    )
    assert response.status_code == 201, response.text


async def session_type(api: httpx.AsyncClient, coach: Account, **fields) -> str:
    body = {"title": "Serve lesson", "duration_minutes": 60, "location": "Court 1"} | fields
    response = await api.post("/scheduling/session-types", headers=coach.headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.fixture(scope="module")
async def club(api) -> dict[str, Account]:
    """Tenant A: admin, scheduler, a coach free all day (UTC) and one free 09-17 UTC, four
    athletes and a second coach; tenant B: its admin and an athlete."""
    admin = await register_tenant(api, "A")
    people = {"admin": admin}
    for name, role in [
        ("scheduler", "SCHEDULER"),
        ("coach", "COACH"),
        ("office_coach", "COACH"),
        ("other_coach", "COACH"),
        ("athlete", "ATHLETE"),
        ("teammate", "ATHLETE"),
        ("third", "ATHLETE"),
        ("fourth", "ATHLETE"),
    ]:
        people[name] = await add_member(api, admin, role)
    await offer(api, people["coach"])
    await offer(api, people["office_coach"], hours=("09:00", "17:00"))
    people["b_admin"] = await register_tenant(api, "B")
    people["b_athlete"] = await add_member(api, people["b_admin"], "ATHLETE")
    return people


async def book(api, who: Account, coach: Account, type_id: str, start: datetime, **extra):
    return await api.post(
        "/scheduling/sessions/book",
        headers=who.headers,
        json={
            "coach_id": str(coach.user_id),
            "session_type_id": type_id,
            "start": start.isoformat(),
        }
        | extra,
    )


async def hold(api, who: Account, coach: Account, type_id: str, start: datetime, **extra):
    return await api.post(
        "/scheduling/holds",
        headers=who.headers,
        json={
            "coach_id": str(coach.user_id),
            "session_type_id": type_id,
            "start": start.isoformat(),
        }
        | extra,
    )


async def open_slots(
    api, who: Account, coach: Account, start: datetime, end: datetime, **params
) -> dict:
    response = await api.get(
        f"/scheduling/availability/{coach.user_id}",
        headers=who.headers,
        params={"from": start.isoformat(), "to": end.isoformat()} | params,
    )
    assert response.status_code == 200, response.text
    return response.json()


async def open_starts(api, who, coach, type_id, start, end) -> list[datetime]:
    body = await open_slots(api, who, coach, start, end, session_type_id=type_id)
    return [datetime.fromisoformat(s["start"]) for s in body["slots"]]


async def events_of(conn, session_id: str) -> list[tuple[str, dict]]:
    rows = await conn.fetch(
        "SELECT event_type, payload FROM outbox_events WHERE aggregate_id = $1"
        " ORDER BY created_at, event_type DESC",
        session_id,
    )
    return [(r["event_type"], json.loads(r["payload"])) for r in rows]


async def blocks_of(conn, coach: Account) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM coach_blocks WHERE coach_id = $1", coach.user_id
    )


# Booking


async def test_athlete_books_an_open_slot_which_is_then_no_longer_open(api, club, superuser_conn):
    athlete, coach = club["athlete"], club["coach"]
    lesson = await session_type(api, coach)
    start = at(2, 10)
    assert start in await open_starts(api, athlete, coach, lesson, at(2, 9), at(2, 12))

    response = await book(api, athlete, coach, lesson, start)

    assert response.status_code == 201, response.text
    booked = response.json()
    assert booked["status"] == "scheduled"
    assert booked["athlete_id"] == str(athlete.user_id)
    assert datetime.fromisoformat(booked["starts_at"]) == start
    assert datetime.fromisoformat(booked["ends_at"]) == start + timedelta(hours=1)
    starts = await open_starts(api, athlete, coach, lesson, at(2, 9), at(2, 11, 1))
    # 09:15 .. 10:45 would overlap the hour booked at 10:00.
    assert starts == [at(2, 9), at(2, 11)]
    [(event_type, payload)] = await events_of(superuser_conn, booked["id"])
    assert event_type == "session.scheduled"
    assert payload == {
        "session_id": booked["id"],
        "coach_id": str(coach.user_id),
        "athlete_id": str(athlete.user_id),
        "session_type_id": lesson,
        "title": "Serve lesson",
        "location": "Court 1",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat(),
        "booked_by": str(athlete.user_id),
    }


async def test_the_same_slot_twice_is_409(api, club):
    lesson = await session_type(api, club["coach"])
    first = await book(api, club["athlete"], club["coach"], lesson, at(3, 10))
    assert first.status_code == 201, first.text
    second = await book(api, club["teammate"], club["coach"], lesson, at(3, 10, 30))
    assert second.status_code == 409
    assert second.headers["content-type"] == PROBLEM
    assert second.json()["code"] == "slot-taken"


async def test_outside_availability_off_the_grid_or_without_offset_is_refused(api, club):
    coach, athlete = club["office_coach"], club["athlete"]
    lesson = await session_type(api, coach)
    for start in (at(4, 17), at(4, 8, 30), at(4, 10, 5), at(4, 16, 15)):
        response = await book(api, athlete, coach, lesson, start)
        assert response.status_code == 409, (start, response.text)
        assert response.json()["code"] == "not-offered"
    naive = await api.post(
        "/scheduling/sessions/book",
        headers=athlete.headers,
        json={
            "coach_id": str(coach.user_id),
            "session_type_id": lesson,
            "start": "2030-01-01T10:00:00",
        },
    )
    assert naive.status_code == 422
    assert (await book(api, athlete, coach, lesson, at(4, 16))).status_code == 201


async def test_notice_and_booking_window_are_kept(api, club):
    coach, athlete = club["coach"], club["athlete"]
    lesson = await session_type(api, coach, min_notice_minutes=3 * 24 * 60, booking_window_days=6)
    assert (await book(api, athlete, coach, lesson, at(1, 10))).status_code == 409
    assert (await book(api, athlete, coach, lesson, at(6, 10))).status_code == 409
    assert (await book(api, athlete, coach, lesson, at(4, 10))).status_code == 201


async def test_a_session_in_the_buffer_of_another_is_409(api, club):
    coach, athlete = club["coach"], club["athlete"]
    buffered = await session_type(api, coach, buffer_after_minutes=30, buffer_before_minutes=15)
    plain = await session_type(api, coach, duration_minutes=30)
    assert (await book(api, athlete, coach, buffered, at(5, 10))).status_code == 201
    # Blocked: 09:45 to 11:30. A plain half hour ending 09:45 fits; one starting 11:15 doesn't.
    assert (await book(api, club["teammate"], coach, plain, at(5, 11, 15))).status_code == 409
    assert (await book(api, club["teammate"], coach, plain, at(5, 9, 15))).status_code == 201
    starts = await open_starts(api, athlete, coach, plain, at(5, 9), at(5, 11, 31))
    assert starts == [at(5, 11, 30)]
    # The buffered type's own 15 minutes before keep it off 09:45's end too.
    buffered_starts = await open_starts(api, athlete, coach, buffered, at(5, 11), at(5, 12, 1))
    assert buffered_starts == [at(5, 11, 45), at(5, 12)]


async def test_coach_cannot_book_and_athlete_cannot_book_for_another(api, club):
    lesson = await session_type(api, club["coach"])
    as_coach = await book(
        api,
        club["coach"],
        club["coach"],
        lesson,
        at(6, 10),
        athlete_id=str(club["athlete"].user_id),
    )
    assert as_coach.status_code == 403
    for_other = await book(
        api,
        club["athlete"],
        club["coach"],
        lesson,
        at(6, 10),
        athlete_id=str(club["teammate"].user_id),
    )
    assert for_other.status_code == 403
    assert for_other.headers["content-type"] == PROBLEM


async def test_scheduler_books_on_behalf_of_an_athlete_who_then_sees_it(api, club):
    lesson = await session_type(api, club["coach"])
    athlete = club["third"]
    without = await book(api, club["scheduler"], club["coach"], lesson, at(7, 10))
    assert without.status_code == 422
    not_athlete = await book(
        api,
        club["scheduler"],
        club["coach"],
        lesson,
        at(7, 10),
        athlete_id=str(club["other_coach"].user_id),
    )
    assert not_athlete.status_code == 404
    response = await book(
        api, club["scheduler"], club["coach"], lesson, at(7, 10), athlete_id=str(athlete.user_id)
    )
    assert response.status_code == 201, response.text
    booked = response.json()
    assert booked["athlete_id"] == str(athlete.user_id)
    assert booked["booked_by"] == str(club["scheduler"].user_id)
    listed = await api.get(
        "/scheduling/sessions",
        headers=athlete.headers,
        params={"from": at(7, 0).isoformat(), "to": at(8, 0).isoformat()},
    )
    assert [s["id"] for s in listed.json()["items"]] == [booked["id"]]


# Seeing sessions


async def test_each_sees_their_own_sessions_and_others_are_404(api, club):
    coach, athlete, teammate = club["coach"], club["athlete"], club["teammate"]
    lesson = await session_type(api, coach)
    mine = (await book(api, athlete, coach, lesson, at(8, 10))).json()
    theirs = (await book(api, teammate, coach, lesson, at(8, 12))).json()
    window = {"from": at(8, 0).isoformat(), "to": at(9, 0).isoformat()}

    async def listed(who: Account) -> list[str]:
        response = await api.get("/scheduling/sessions", headers=who.headers, params=window)
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["items"]]

    assert await listed(athlete) == [mine["id"]]
    assert await listed(teammate) == [theirs["id"]]
    assert await listed(coach) == [mine["id"], theirs["id"]]
    assert await listed(club["other_coach"]) == []
    assert await listed(club["admin"]) == [mine["id"], theirs["id"]]
    assert await listed(club["scheduler"]) == [mine["id"], theirs["id"]]
    assert (
        await api.get(f"/scheduling/sessions/{theirs['id']}", headers=athlete.headers)
    ).status_code == 404
    assert (
        await api.get(f"/scheduling/sessions/{mine['id']}", headers=club["other_coach"].headers)
    ).status_code == 404
    assert (
        await api.get(f"/scheduling/sessions/{mine['id']}", headers=coach.headers)
    ).status_code == 200
    cancel = await api.post(
        f"/scheduling/sessions/{theirs['id']}/cancel", headers=athlete.headers, json={}
    )
    assert cancel.status_code == 404


async def test_the_sessions_list_pages_by_start(api, club):
    coach, athlete = club["coach"], club["fourth"]
    lesson = await session_type(api, coach, duration_minutes=30)
    ids = [
        (await book(api, athlete, coach, lesson, at(9, hour))).json()["id"] for hour in (8, 9, 10)
    ]
    params = {"from": at(9, 0).isoformat(), "to": at(10, 0).isoformat(), "limit": 2}
    first = (await api.get("/scheduling/sessions", headers=athlete.headers, params=params)).json()
    assert [s["id"] for s in first["items"]] == ids[:2] and first["next_cursor"]
    second = (
        await api.get(
            "/scheduling/sessions",
            headers=athlete.headers,
            params=params | {"cursor": first["next_cursor"]},
        )
    ).json()
    assert [s["id"] for s in second["items"]] == ids[2:] and second["next_cursor"] is None
    too_wide = await api.get(
        "/scheduling/sessions",
        headers=athlete.headers,
        params={"from": at(0, 0).isoformat(), "to": at(90, 0).isoformat()},
    )
    assert too_wide.status_code == 422


async def test_other_tenants_ids_are_404_everywhere(api, club, superuser_conn):
    coach, athlete, stranger = club["coach"], club["athlete"], club["b_admin"]
    lesson = await session_type(api, coach)
    booked = (await book(api, athlete, coach, lesson, at(10, 10))).json()
    held = (await hold(api, athlete, coach, lesson, at(10, 12))).json()
    window = {"from": at(10, 0).isoformat(), "to": at(11, 0).isoformat()}
    moved = {"start": at(10, 14).isoformat()}
    calls = [
        ("GET", f"/scheduling/sessions/{booked['id']}", None, None),
        ("POST", f"/scheduling/sessions/{booked['id']}/cancel", None, {"reason": "mine now"}),
        ("POST", f"/scheduling/sessions/{booked['id']}/reschedule", None, moved),
        ("DELETE", f"/scheduling/holds/{held['id']}", None, None),
        ("GET", f"/scheduling/availability/{coach.user_id}", window, None),
    ]
    for method, url, params, body in calls:
        response = await api.request(
            method, url, params=params, json=body, headers=stranger.headers
        )
        assert response.status_code == 404, (method, url, response.text)
        assert response.headers["content-type"] == PROBLEM
    booking = await book(
        api, stranger, coach, lesson, at(10, 16), athlete_id=str(club["b_athlete"].user_id)
    )
    assert booking.status_code == 404
    b_listed = await api.get("/scheduling/sessions", headers=stranger.headers, params=window)
    assert b_listed.json()["items"] == []
    row = await superuser_conn.fetchrow(
        "SELECT status FROM coaching_sessions WHERE id = $1::uuid", booked["id"]
    )
    assert row["status"] == "scheduled"


# Holds


async def test_a_held_slot_is_not_open_and_booking_with_the_hold_converts_it(
    api, club, superuser_conn
):
    coach, athlete = club["coach"], club["athlete"]
    lesson = await session_type(api, coach)
    start = at(11, 10)
    response = await hold(api, athlete, coach, lesson, start)
    assert response.status_code == 201, response.text
    held = response.json()
    assert held["status"] == "held"
    expires = datetime.fromisoformat(held["hold_expires_at"])
    assert timedelta(minutes=9) < expires - datetime.now(UTC) <= timedelta(minutes=10)
    assert start not in await open_starts(api, athlete, coach, lesson, at(11, 9), at(11, 12))
    assert (await book(api, club["teammate"], coach, lesson, start)).status_code == 409
    # Someone else's hold can't be converted, nor one for another slot.
    stolen = await book(api, club["teammate"], coach, lesson, start, hold_id=held["id"])
    assert stolen.status_code == 404
    elsewhere = await book(api, athlete, coach, lesson, at(11, 14), hold_id=held["id"])
    assert elsewhere.status_code == 409
    assert await events_of(superuser_conn, held["id"]) == []

    converted = await book(api, athlete, coach, lesson, start, hold_id=held["id"])

    assert converted.status_code == 201, converted.text
    assert converted.json()["id"] == held["id"]
    assert converted.json()["status"] == "scheduled"
    assert converted.json()["hold_expires_at"] is None
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM coach_blocks WHERE coach_id = $1 AND starts_at = $2",
            coach.user_id,
            start,
        )
        == 1
    )
    [(event_type, _)] = await events_of(superuser_conn, held["id"])
    assert event_type == "session.scheduled"


async def test_an_expired_hold_frees_the_slot_with_no_job_run(api, club, superuser_conn):
    coach, athlete, teammate = club["coach"], club["athlete"], club["teammate"]
    lesson = await session_type(api, coach)
    start = at(12, 10)
    held = (await hold(api, athlete, coach, lesson, start)).json()
    await superuser_conn.execute(
        "UPDATE coaching_sessions SET hold_expires_at = now() - interval '1 second'"
        " WHERE id = $1::uuid",
        held["id"],
    )
    assert start in await open_starts(api, teammate, coach, lesson, at(12, 9), at(12, 12))
    late = await book(api, athlete, coach, lesson, start, hold_id=held["id"])
    assert late.status_code == 409
    assert late.json()["code"] == "hold-expired"

    response = await book(api, teammate, coach, lesson, start)

    assert response.status_code == 201, response.text
    expired = await api.get(f"/scheduling/sessions/{held['id']}", headers=athlete.headers)
    assert expired.json()["status"] == "expired"
    row = await superuser_conn.fetchrow(
        "SELECT status, block_id FROM coaching_sessions WHERE id = $1::uuid", held["id"]
    )
    assert row["status"] == "expired" and row["block_id"] is None


async def test_a_released_hold_frees_the_slot_at_once(api, club):
    coach, athlete = club["coach"], club["athlete"]
    lesson = await session_type(api, coach)
    start = at(13, 10)
    held = (await hold(api, athlete, coach, lesson, start)).json()
    someone_else = await api.delete(
        f"/scheduling/holds/{held['id']}", headers=club["teammate"].headers
    )
    assert someone_else.status_code == 404
    released = await api.delete(f"/scheduling/holds/{held['id']}", headers=athlete.headers)
    assert released.status_code == 204
    assert start in await open_starts(api, athlete, coach, lesson, at(13, 9), at(13, 12))
    assert (await book(api, club["teammate"], coach, lesson, start)).status_code == 201


# Group clinics


async def test_a_clinic_takes_bookings_up_to_its_capacity(api, club):
    coach = club["coach"]
    clinic = await session_type(api, coach, title="Clinic", capacity=3, duration_minutes=90)
    start = at(14, 10)
    seats = []
    for name in ("athlete", "teammate", "third"):
        slot = next(
            s
            for s in (
                await open_slots(
                    api, club[name], coach, at(14, 9), at(14, 12), session_type_id=clinic
                )
            )["slots"]
            if datetime.fromisoformat(s["start"]) == start
        )
        seats.append(slot["seats_left"])
        assert (await book(api, club[name], coach, clinic, start)).status_code == 201
    assert seats == [3, 2, 1]
    again = await book(api, club["athlete"], coach, clinic, start)
    assert again.status_code == 409
    full = await book(api, club["fourth"], coach, clinic, start)
    assert full.status_code == 409 and full.json()["code"] == "full"
    assert start not in await open_starts(api, club["fourth"], coach, clinic, at(14, 9), at(14, 12))


# Cancelling and rescheduling


async def test_athlete_cancels_before_the_cutoff_and_the_slot_opens(api, club, superuser_conn):
    coach, athlete = club["coach"], club["athlete"]
    lesson = await session_type(api, coach)
    start = at(15, 10)
    booked = (await book(api, athlete, coach, lesson, start)).json()
    response = await api.post(
        f"/scheduling/sessions/{booked['id']}/cancel",
        headers=athlete.headers,
        json={"reason": "injured"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancel_reason"] == "injured"
    assert start in await open_starts(api, athlete, coach, lesson, at(15, 9), at(15, 12))
    again = await api.post(
        f"/scheduling/sessions/{booked['id']}/cancel", headers=athlete.headers, json={}
    )
    assert again.status_code == 409
    events = await events_of(superuser_conn, booked["id"])
    assert [e for e, _ in events] == ["session.scheduled", "session.cancelled"]
    assert events[1][1]["cancelled_by"] == str(athlete.user_id)
    assert events[1][1]["reason"] == "injured"


async def test_after_the_cutoff_the_athlete_is_refused_and_the_coach_may_cancel(api, club):
    coach, athlete = club["coach"], club["athlete"]
    lesson = await session_type(api, coach)
    # Within the default 24-hour cutoff: on the next quarter hour a few hours from now.
    soon = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=3)
    soon -= timedelta(minutes=soon.minute % 15)
    booked = await book(api, athlete, coach, lesson, soon)
    assert booked.status_code == 201, booked.text
    session_id = booked.json()["id"]
    refused = await api.post(
        f"/scheduling/sessions/{session_id}/cancel", headers=athlete.headers, json={}
    )
    assert refused.status_code == 409
    assert refused.json()["cutoff_minutes"] == 24 * 60
    moved = await api.post(
        f"/scheduling/sessions/{session_id}/reschedule",
        headers=athlete.headers,
        json={"start": at(16, 10).isoformat()},
    )
    assert moved.status_code == 409
    by_coach = await api.post(
        f"/scheduling/sessions/{session_id}/cancel", headers=coach.headers, json={"reason": "rain"}
    )
    assert by_coach.status_code == 200
    assert by_coach.json()["cancelled_by"] == str(coach.user_id)


async def test_reschedule_moves_the_session_atomically_with_both_events(api, club, superuser_conn):
    coach, athlete = club["coach"], club["athlete"]
    lesson = await session_type(api, coach)
    old_start, new_start = at(17, 10), at(17, 10, 30)
    old = (await book(api, athlete, coach, lesson, old_start)).json()
    taken = (await book(api, club["teammate"], coach, lesson, at(17, 14))).json()

    # Onto a taken slot: nothing changes.
    refused = await api.post(
        f"/scheduling/sessions/{old['id']}/reschedule",
        headers=athlete.headers,
        json={"start": at(17, 14, 30).isoformat()},
    )
    assert refused.status_code == 409
    assert (await api.get(f"/scheduling/sessions/{old['id']}", headers=athlete.headers)).json()[
        "status"
    ] == "scheduled"

    # Half an hour later, overlapping its own old time.
    response = await api.post(
        f"/scheduling/sessions/{old['id']}/reschedule",
        headers=athlete.headers,
        json={"start": new_start.isoformat(), "reason": "later please"},
    )

    assert response.status_code == 200, response.text
    new = response.json()
    assert new["id"] != old["id"] and new["status"] == "scheduled"
    assert datetime.fromisoformat(new["starts_at"]) == new_start
    old_now = (await api.get(f"/scheduling/sessions/{old['id']}", headers=athlete.headers)).json()
    assert old_now["status"] == "cancelled"
    cancelled = await events_of(superuser_conn, old["id"])
    assert [e for e, _ in cancelled] == ["session.scheduled", "session.cancelled"]
    assert cancelled[1][1]["rescheduled_to"] == new["id"]
    [(event_type, payload)] = await events_of(superuser_conn, new["id"])
    assert event_type == "session.scheduled" and payload["rescheduled_from"] == old["id"]
    assert taken["status"] == "scheduled"
    starts = await open_starts(api, athlete, coach, lesson, at(17, 9), at(17, 12))
    assert at(17, 9, 30) in starts and at(17, 11, 30) in starts
    assert old_start not in starts and at(17, 9, 45) not in starts


# Open slots


async def test_open_slots_are_given_in_the_viewers_zone(api, club):
    coach, athlete = club["office_coach"], club["athlete"]
    lesson = await session_type(api, coach, duration_minutes=120)
    body = await open_slots(
        api, athlete, coach, at(18, 0), at(19, 0), tz="America/New_York", session_type_id=lesson
    )
    assert body["time_zone"] == "America/New_York"
    assert body["coach_id"] == str(coach.user_id)
    assert [r["start"] for r in body["rules"]] == ["09:00"] * 7
    starts = [datetime.fromisoformat(s["start"]) for s in body["slots"]]
    # 09:00 to 15:00 UTC on the grid, each shown with New York's offset.
    assert starts == [at(18, 9) + timedelta(minutes=15 * i) for i in range(25)]
    offsets = {s.utcoffset() for s in starts}
    assert offsets <= {timedelta(hours=-5), timedelta(hours=-4)}
    assert all(s["seats_left"] == 1 for s in body["slots"])


async def test_open_slots_refuse_unknown_zones_and_reversed_ranges(api, club):
    coach, athlete = club["coach"], club["athlete"]
    url = f"/scheduling/availability/{coach.user_id}"
    for params in (
        {"from": at(1, 0).isoformat(), "to": at(2, 0).isoformat(), "tz": "Mars/Olympus"},
        {"from": at(2, 0).isoformat(), "to": at(1, 0).isoformat()},
        {"from": "2030-01-01T00:00:00", "to": "2030-01-02T00:00:00"},
        {"from": at(0, 0).isoformat(), "to": at(90, 0).isoformat()},
    ):
        response = await api.get(url, headers=athlete.headers, params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"] == PROBLEM


async def test_the_organisations_own_cutoff_applies_and_only_its_admin_sets_it(api):
    admin = await register_tenant(api, "Cutoff")
    coach = await add_member(api, admin, "COACH")
    athlete = await add_member(api, admin, "ATHLETE")
    await offer(api, coach)
    lesson = await session_type(api, coach)
    url = "/scheduling/sessions/{}/cancel"
    soon = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(hours=3)
    soon -= timedelta(minutes=soon.minute % 15)
    first = (await book(api, athlete, coach, lesson, soon)).json()
    assert (
        await api.post(url.format(first["id"]), headers=athlete.headers, json={})
    ).status_code == 409

    cutoff = f"/tenants/{admin.tenant_id}/booking-cancellation-cutoff"
    assert (await api.put(cutoff, headers=coach.headers, json={"minutes": 60})).status_code == 403
    stranger = await register_tenant(api, "Elsewhere")
    assert (await api.put(cutoff, headers=stranger.headers, json={"minutes": 0})).status_code == 404
    response = await api.put(cutoff, headers=admin.headers, json={"minutes": 60})
    assert response.status_code == 200 and response.json() == {"minutes": 60}

    allowed = await api.post(url.format(first["id"]), headers=athlete.headers, json={})
    assert allowed.status_code == 200, allowed.text
    second = (await book(api, athlete, coach, lesson, soon)).json()
    reset = await api.put(cutoff, headers=admin.headers, json={"minutes": None})
    assert reset.json() == {"minutes": None}
    assert (
        await api.post(url.format(second["id"]), headers=athlete.headers, json={})
    ).status_code == 409


async def test_a_desk_booking_checks_the_athlete_again_inside_its_own_transaction(
    api, club, db, settings
):
    """A desk's booking checks the athlete's membership first, then books in a transaction
    of its own; what refuses an athlete removed in between is the booking's re-check, under
    a lock. Its step is called here as if the removal had come between the two."""
    lesson = uuid.UUID(await session_type(api, club["coach"]))
    scheduler = club["scheduler"]
    desk = Caller(scheduler.user_id, scheduler.tenant_id, Role.SCHEDULER)

    async def place(athlete: Account):
        return await service._place_raw(
            db,
            desk,
            settings,
            coach_id=club["coach"].user_id,
            session_type_id=lesson,
            start=at(41, 10),
            athlete_id=athlete.user_id,
            now=datetime.now(UTC),
        )

    # Not an athlete of this tenant (a coach; another tenant's athlete): nothing booked.
    for not_athlete in (club["other_coach"], club["b_athlete"]):
        with pytest.raises(NotFound):
            await place(not_athlete)
    booked = await place(club["fourth"])
    assert booked.athlete_id == club["fourth"].user_id
