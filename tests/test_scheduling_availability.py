"""Session types and availability through the API (real PostgreSQL under RLS), and the
start times they offer (app/scheduling/service.py, as app/bookings calls it)."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.infra.errors import NotFound, ValidationFailed
from app.main import create_app
from app.scheduling import service
from app.scheduling.slots import END_OF_DAY
from tests.conftest import random_client_ip
from tests.factories import Account, add_member, register_tenant

PROBLEM = "application/problem+json"
TYPES = "/scheduling/session-types"
AVAILABILITY = "/scheduling/availability"


@pytest.fixture(scope="module")
async def app(settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with LifespanManager(application):
        yield application


@pytest.fixture(scope="module")
async def org(app) -> dict[str, Account]:
    """One tenant (admin, scheduler, two coaches, an athlete) and another tenant's admin
    and coach, shared by the module's tests: each test makes its own types and hours."""
    transport = httpx.ASGITransport(app=app, client=(random_client_ip(), 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://courtside.test") as c:
        admin = await register_tenant(c)
        other_admin = await register_tenant(c, name="Rival club")
        return {
            "admin": admin,
            "scheduler": await add_member(c, admin, "SCHEDULER"),
            "coach": await add_member(c, admin, "COACH"),
            "other_coach": await add_member(c, admin, "COACH"),
            "athlete": await add_member(c, admin, "ATHLETE"),
            "foreign_admin": other_admin,
            "foreign_coach": await add_member(c, other_admin, "COACH"),
        }


@pytest.fixture
async def coach(client, org) -> Account:
    """A coach of its own, whose availability no other test touches."""
    return await add_member(client, org["admin"], "COACH")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def create_type(client, account: Account, **fields) -> httpx.Response:
    body = {"title": "Private lesson", "duration_minutes": 60} | fields
    return await client.post(TYPES, headers=account.headers, json=body)


async def add_hours(client, account: Account, **body) -> httpx.Response:
    return await client.post(AVAILABILITY, headers=account.headers, json=body)


async def new_type(client, coach: Account, **fields) -> dict:
    response = await create_type(client, coach, **fields)
    assert response.status_code == 201, response.text
    return response.json()


async def offered(db, settings, account: Account, type_id: str, start, end, *, now) -> list:
    async with db.transaction(account.tenant_id, account.user_id) as session:
        session_type = await service.session_type_for_booking(session, uuid.UUID(type_id))
        return await service.offered_starts(
            session, session_type, start, end, now=now, settings=settings
        )


async def stored(db, coach: Account) -> tuple[list, list]:
    async with db.transaction(coach.tenant_id, coach.user_id) as session:
        return await service.coach_availability(session, coach.user_id)


# Session types


async def test_coach_creates_own_session_type_with_defaults(client, org):
    response = await create_type(client, org["coach"], location="Court 3")
    assert response.status_code == 201, response.text
    body = response.json()
    assert (
        body
        | {
            "coach_id": str(org["coach"].user_id),
            "title": "Private lesson",
            "duration_minutes": 60,
            "buffer_before_minutes": 0,
            "buffer_after_minutes": 0,
            "location": "Court 3",
            "capacity": 1,
            "min_notice_minutes": 0,
            "booking_window_days": 60,
            "active": True,
        }
        == body
    )


@pytest.mark.parametrize("role", ["admin", "scheduler"])
async def test_admin_and_scheduler_create_types_for_any_coach(client, org, role):
    response = await create_type(
        client, org[role], coach_id=str(org["coach"].user_id), capacity=6, title="Clinic"
    )
    assert response.status_code == 201, response.text
    assert response.json()["coach_id"] == str(org["coach"].user_id)
    assert response.json()["capacity"] == 6


async def test_athlete_cannot_create_a_type_for_a_coach_or_for_themselves(client, org):
    for_coach = await create_type(client, org["athlete"], coach_id=str(org["coach"].user_id))
    assert for_coach.status_code == 403
    assert for_coach.headers["content-type"] == PROBLEM
    assert (await create_type(client, org["athlete"])).status_code == 403


async def test_coach_cannot_create_a_type_for_another_coach(client, org):
    response = await create_type(client, org["coach"], coach_id=str(org["other_coach"].user_id))
    assert response.status_code == 403


@pytest.mark.parametrize("who", ["athlete", "foreign_coach", "unknown", "admin"])
async def test_types_are_only_for_coaches_of_the_tenant(client, org, who):
    coach_id = str(uuid.uuid4()) if who == "unknown" else str(org[who].user_id)
    response = await create_type(client, org["admin"], coach_id=coach_id)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    "fields",
    [
        {"duration_minutes": 4},
        {"capacity": 0},
        {"buffer_before_minutes": -1},
        {"booking_window_days": 0},
        {"title": ""},
        {"tenant_id": str(uuid.uuid4())},
    ],
)
async def test_invalid_session_types_are_422(client, org, fields):
    assert (await create_type(client, org["coach"], **fields)).status_code == 422


async def test_any_member_reads_types_and_filters_by_coach(client, org):
    mine = await new_type(client, org["other_coach"], title="Serve clinic")
    for role in ("athlete", "scheduler", "coach"):
        listed = await client.get(
            TYPES, headers=org[role].headers, params={"coach_id": str(org["other_coach"].user_id)}
        )
        assert listed.status_code == 200
        items = listed.json()["items"]
        assert mine["id"] in {t["id"] for t in items}
        assert {t["coach_id"] for t in items} == {str(org["other_coach"].user_id)}
        one = await client.get(f"{TYPES}/{mine['id']}", headers=org[role].headers)
        assert one.status_code == 200 and one.json() == mine


async def test_another_tenants_type_is_404(client, org):
    theirs = await new_type(client, org["foreign_coach"])
    url = f"{TYPES}/{theirs['id']}"
    assert (await client.get(url, headers=org["admin"].headers)).status_code == 404
    patched = await client.patch(url, headers=org["admin"].headers, json={"title": "Mine now"})
    assert patched.status_code == 404
    listed = await client.get(TYPES, headers=org["admin"].headers)
    assert theirs["id"] not in {t["id"] for t in listed.json()["items"]}


async def test_only_the_coach_admin_or_scheduler_change_a_type(client, org):
    session_type = await new_type(client, org["coach"])
    url = f"{TYPES}/{session_type['id']}"
    for role in ("athlete", "other_coach"):
        response = await client.patch(url, headers=org[role].headers, json={"title": "Mine"})
        assert response.status_code == 403
    for role, title in (("coach", "A"), ("scheduler", "B"), ("admin", "C")):
        response = await client.patch(url, headers=org[role].headers, json={"title": title})
        assert response.status_code == 200 and response.json()["title"] == title


async def test_patch_changes_only_what_is_sent(client, org):
    session_type = await new_type(client, org["coach"], location="Court 1", capacity=4)
    response = await client.patch(
        f"{TYPES}/{session_type['id']}",
        headers=org["coach"].headers,
        json={"duration_minutes": 90, "location": None},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["duration_minutes"] == 90 and body["location"] is None
    assert body["capacity"] == 4 and body["title"] == session_type["title"]


@pytest.mark.parametrize(
    "changes", [{"title": None}, {"duration_minutes": 2000}, {"coach_id": str(uuid.uuid4())}]
)
async def test_invalid_type_changes_are_422(client, org, changes):
    session_type = await new_type(client, org["coach"])
    response = await client.patch(
        f"{TYPES}/{session_type['id']}", headers=org["coach"].headers, json=changes
    )
    assert response.status_code == 422


async def test_deactivated_type_leaves_the_list_and_booking(client, org, db):
    session_type = await new_type(client, org["coach"])
    response = await client.patch(
        f"{TYPES}/{session_type['id']}", headers=org["coach"].headers, json={"active": False}
    )
    assert response.status_code == 200 and response.json()["active"] is False
    params = {"coach_id": str(org["coach"].user_id)}
    listed = await client.get(TYPES, headers=org["athlete"].headers, params=params)
    assert session_type["id"] not in {t["id"] for t in listed.json()["items"]}
    every = await client.get(
        TYPES, headers=org["athlete"].headers, params=params | {"include_inactive": "true"}
    )
    assert session_type["id"] in {t["id"] for t in every.json()["items"]}
    async with db.transaction(org["coach"].tenant_id, org["coach"].user_id) as session:
        with pytest.raises(NotFound):
            await service.session_type_for_booking(session, uuid.UUID(session_type["id"]))


async def test_session_type_for_booking_does_not_cross_tenants(client, org, db):
    theirs = await new_type(client, org["foreign_coach"])
    async with db.transaction(org["admin"].tenant_id, org["admin"].user_id) as session:
        with pytest.raises(NotFound):
            await service.session_type_for_booking(session, uuid.UUID(theirs["id"]))


# Availability: writing it


async def test_coach_adds_weekly_hours_and_overrides(client, org, coach, db):
    response = await add_hours(
        client,
        coach,
        time_zone="Europe/Berlin",
        effective_from="2026-06-01",
        rules=[
            {"weekday": 0, "start": "09:00", "end": "12:00"},
            {"weekday": 2, "start": "18:00", "end": "24:00"},
        ],
        overrides=[
            {"date": "2026-06-08", "kind": "unavailable"},
            {"date": "2026-06-10", "kind": "available", "start": "07:30", "end": "09:00"},
        ],
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["coach_id"] == str(coach.user_id)
    assert [(r["weekday"], r["start"], r["end"]) for r in body["rules"]] == [
        (0, "09:00", "12:00"),
        (2, "18:00", "24:00"),
    ]
    assert {r["time_zone"] for r in body["rules"]} == {"Europe/Berlin"}
    assert {r["effective_from"] for r in body["rules"]} == {"2026-06-01"}
    assert [(o["date"], o["kind"], o["start"], o["end"]) for o in body["overrides"]] == [
        ("2026-06-08", "unavailable", None, None),
        ("2026-06-10", "available", "07:30", "09:00"),
    ]
    rules, overrides = await stored(db, coach)
    assert {str(r.id) for r in rules} == {r["id"] for r in body["rules"]}
    assert [(r.start_time, r.end_time) for r in rules] == [
        (time(9), time(12)),
        (time(18), END_OF_DAY),
    ]
    assert {str(o.id) for o in overrides} == {o["id"] for o in body["overrides"]}


@pytest.mark.parametrize("role", ["admin", "scheduler"])
async def test_admin_and_scheduler_set_any_coachs_hours(client, org, coach, role):
    response = await add_hours(
        client,
        org[role],
        coach_id=str(coach.user_id),
        time_zone="UTC",
        rules=[{"weekday": 1, "start": "10:00", "end": "11:00"}],
    )
    assert response.status_code == 201, response.text
    assert response.json()["rules"][0]["coach_id"] == str(coach.user_id)


async def test_athlete_cannot_set_a_coachs_hours(client, org, coach, db):
    response = await add_hours(
        client,
        org["athlete"],
        coach_id=str(coach.user_id),
        time_zone="UTC",
        rules=[{"weekday": 1, "start": "10:00", "end": "11:00"}],
    )
    assert response.status_code == 403
    assert await stored(db, coach) == ([], [])


async def test_coach_cannot_set_another_coachs_hours(client, org, coach, db):
    response = await add_hours(
        client,
        org["other_coach"],
        coach_id=str(coach.user_id),
        time_zone="UTC",
        overrides=[{"date": "2026-06-01", "kind": "available", "start": "10:00", "end": "11:00"}],
    )
    assert response.status_code == 403
    assert await stored(db, coach) == ([], [])


async def test_hours_are_only_for_coaches_of_the_tenant(client, org):
    for who in ("foreign_coach", "athlete"):
        response = await add_hours(
            client,
            org["admin"],
            coach_id=str(org[who].user_id),
            time_zone="UTC",
            rules=[{"weekday": 1, "start": "10:00", "end": "11:00"}],
        )
        assert response.status_code == 422, who


@pytest.mark.parametrize(
    "body",
    [
        {"time_zone": "Mars/Olympus"},
        {"time_zone": "localtime"},
        {"rules": [{"weekday": 0, "start": "12:00", "end": "12:00"}]},
        {"rules": [{"weekday": 0, "start": "12:00", "end": "09:00"}]},
        {"rules": [{"weekday": 7, "start": "09:00", "end": "10:00"}]},
        {"rules": [{"weekday": 0, "start": "09:00+02:00", "end": "10:00"}]},
        {"rules": [{"weekday": 0, "start": "09:00:30", "end": "10:00"}]},
        {"effective_from": "2026-06-10", "effective_until": "2026-06-09"},
        {"overrides": [{"date": "2026-06-01", "kind": "available"}]},
        {"overrides": [{"date": "2026-06-01", "kind": "unavailable", "start": "10:00"}]},
        {"overrides": [{"date": "2026-06-01", "kind": "busy"}]},
        {"rules": [], "overrides": []},
    ],
)
async def test_invalid_availability_is_422(client, coach, body):
    request = {
        "time_zone": "Europe/Berlin",
        "rules": [{"weekday": 0, "start": "09:00", "end": "10:00"}],
    } | body
    response = await add_hours(client, coach, **request)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM


async def _one_rule(client, coach: Account, **rule) -> dict:
    response = await add_hours(
        client,
        coach,
        time_zone="Europe/Berlin",
        rules=[{"weekday": 0, "start": "09:00", "end": "12:00"} | rule],
    )
    assert response.status_code == 201, response.text
    return response.json()["rules"][0]


async def _one_override(client, coach: Account, **override) -> dict:
    response = await add_hours(
        client,
        coach,
        time_zone="Europe/Berlin",
        overrides=[{"date": "2026-06-01", "kind": "unavailable"} | override],
    )
    assert response.status_code == 201, response.text
    return response.json()["overrides"][0]


async def test_edit_a_rule(client, coach, db):
    rule = await _one_rule(client, coach)
    response = await client.patch(
        f"{AVAILABILITY}/rules/{rule['id']}",
        headers=coach.headers,
        json={"end": "13:30", "time_zone": "Asia/Kolkata", "effective_until": "2026-12-31"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["start"], body["end"], body["time_zone"]) == ("09:00", "13:30", "Asia/Kolkata")
    assert body["effective_until"] == "2026-12-31"
    (stored_rule,), _ = await stored(db, coach)
    assert (stored_rule.end_time, stored_rule.time_zone) == (time(13, 30), "Asia/Kolkata")
    assert stored_rule.effective_until == date(2026, 12, 31)


@pytest.mark.parametrize(
    "changes",
    [
        {"start": "12:00"},  # now end <= start
        {"end": "08:00"},
        {"time_zone": "Europe/Atlantis"},
        {"effective_from": "2026-06-10", "effective_until": "2026-06-01"},
        {"weekday": None},
    ],
)
async def test_invalid_rule_edits_are_422_and_change_nothing(client, coach, db, changes):
    rule = await _one_rule(client, coach)
    response = await client.patch(
        f"{AVAILABILITY}/rules/{rule['id']}", headers=coach.headers, json=changes
    )
    assert response.status_code == 422, response.text
    (stored_rule,), _ = await stored(db, coach)
    assert (stored_rule.start_time, stored_rule.end_time) == (time(9), time(12))
    assert stored_rule.time_zone == "Europe/Berlin"


async def test_reversed_effective_dates_by_one_edit_are_422(client, coach):
    rule = await _one_rule(client, coach, weekday=3)
    url = f"{AVAILABILITY}/rules/{rule['id']}"
    ok = await client.patch(url, headers=coach.headers, json={"effective_from": "2026-06-10"})
    assert ok.status_code == 200
    reversed_ = await client.patch(
        url, headers=coach.headers, json={"effective_until": "2026-06-09"}
    )
    assert reversed_.status_code == 422


async def test_edit_an_override(client, coach, db):
    override = await _one_override(client, coach)
    url = f"{AVAILABILITY}/overrides/{override['id']}"
    needs_hours = await client.patch(url, headers=coach.headers, json={"kind": "available"})
    assert needs_hours.status_code == 422
    response = await client.patch(
        url,
        headers=coach.headers,
        json={"kind": "available", "start": "16:00", "end": "18:00", "date": "2026-06-02"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["date"], body["kind"], body["start"], body["end"]) == (
        "2026-06-02",
        "available",
        "16:00",
        "18:00",
    )
    whole_day = await client.patch(
        url, headers=coach.headers, json={"kind": "unavailable", "start": None, "end": None}
    )
    assert whole_day.status_code == 200
    _, (stored_override,) = await stored(db, coach)
    assert (stored_override.kind, stored_override.start_time) == ("unavailable", None)


async def test_delete_a_rule_and_an_override(client, coach, db):
    rule = await _one_rule(client, coach)
    override = await _one_override(client, coach)
    for url in (f"{AVAILABILITY}/rules/{rule['id']}", f"{AVAILABILITY}/overrides/{override['id']}"):
        assert (await client.delete(url, headers=coach.headers)).status_code == 204
        assert (await client.delete(url, headers=coach.headers)).status_code == 404
    assert await stored(db, coach) == ([], [])


async def test_others_cannot_edit_or_delete_a_coachs_hours(client, org, coach, db):
    rule = await _one_rule(client, coach)
    override = await _one_override(client, coach)
    urls = (f"{AVAILABILITY}/rules/{rule['id']}", f"{AVAILABILITY}/overrides/{override['id']}")
    for role in ("athlete", "other_coach"):
        for url in urls:
            headers = org[role].headers
            patched = await client.patch(url, headers=headers, json={"end": "23:00"})
            assert patched.status_code == 403
            assert (await client.delete(url, headers=headers)).status_code == 403
    for role in ("foreign_admin", "foreign_coach"):
        for url in urls:
            headers = org[role].headers
            patched = await client.patch(url, headers=headers, json={"end": "23:00"})
            assert patched.status_code == 404
            assert (await client.delete(url, headers=headers)).status_code == 404
    rules, overrides = await stored(db, coach)
    assert [r.end_time for r in rules] == [time(12)] and len(overrides) == 1
    scheduler_edit = await client.patch(
        urls[0], headers=org["scheduler"].headers, json={"end": "14:00"}
    )
    assert scheduler_edit.status_code == 200
    assert (await client.delete(urls[1], headers=org["admin"].headers)).status_code == 204


# Availability: the start times it offers


async def test_offered_starts_from_stored_hours_across_new_york_spring_forward(
    client, coach, db, settings
):
    await add_hours(
        client,
        coach,
        time_zone="America/New_York",
        rules=[{"weekday": wd, "start": "01:30", "end": "03:30"} for wd in range(7)],
    )
    session_type = await new_type(client, coach, duration_minutes=30)
    starts = await offered(
        db, settings, coach, session_type["id"], utc(2026, 3, 7), utc(2026, 3, 9),
        now=utc(2026, 3, 1),
    )  # fmt: skip
    assert starts == [
        # Saturday: 01:30-03:30 EST, by quarter hours, a 30-minute session fitting.
        *(utc(2026, 3, 7, 6, 30) + timedelta(minutes=15 * i) for i in range(7)),
        # Sunday: 01:30 EST to 03:30 EDT is one real hour.
        utc(2026, 3, 8, 6, 30),
        utc(2026, 3, 8, 6, 45),
        utc(2026, 3, 8, 7, 0),
    ]


@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        # 00:00-03:00 local on each zone's fall-back day is four real hours; of the hourly
        # sessions offered every 15 minutes, those on the hour: the repeated hour is offered
        # twice, once per real instant.
        ("America/New_York", date(2026, 11, 1), [(1, 4), (1, 5), (1, 6), (1, 7)]),
        ("Europe/Berlin", date(2026, 10, 25), [(24, 22), (24, 23), (25, 0), (25, 1)]),
        ("Australia/Sydney", date(2026, 4, 5), [(4, 13), (4, 14), (4, 15), (4, 16)]),
    ],
)
async def test_offered_starts_on_fall_back_days(client, coach, db, settings, zone, day, expected):
    await add_hours(
        client,
        coach,
        time_zone=zone,
        overrides=[
            {"date": day.isoformat(), "kind": "available", "start": "00:00", "end": "03:00"}
        ],
    )
    session_type = await new_type(client, coach)
    start = datetime.combine(day, time(), UTC) - timedelta(days=1)
    starts = await offered(
        db, settings, coach, session_type["id"], start, start + timedelta(days=2),
        now=start - timedelta(days=7),
    )  # fmt: skip
    assert [t for t in starts if t.minute == 0] == [
        utc(day.year, day.month, d, h) for d, h in expected
    ]
    assert starts == [starts[0] + timedelta(minutes=15 * i) for i in range(13)]


async def test_day_off_and_extra_hours_through_the_database(client, coach, db, settings):
    await add_hours(
        client,
        coach,
        time_zone="Europe/Berlin",
        rules=[{"weekday": wd, "start": "09:00", "end": "11:00"} for wd in range(7)],
        overrides=[
            {"date": "2026-06-02", "kind": "unavailable"},
            {"date": "2026-06-03", "kind": "available", "start": "18:00", "end": "19:00"},
            {"date": "2026-06-04", "kind": "unavailable", "start": "09:00", "end": "10:00"},
        ],
    )
    session_type = await new_type(client, coach)
    starts = await offered(
        db, settings, coach, session_type["id"], utc(2026, 6, 2), utc(2026, 6, 5),
        now=utc(2026, 5, 1),
    )  # fmt: skip
    hourly = [t for t in starts if t.minute == 0]
    assert hourly == [
        utc(2026, 6, 3, 7),
        utc(2026, 6, 3, 8),
        utc(2026, 6, 3, 16),  # extra hours, 18:00 CEST
        utc(2026, 6, 4, 8),  # 10:00 CEST, after the hour off
    ]


async def test_effective_dates_through_the_database(client, coach, db, settings):
    await add_hours(
        client,
        coach,
        time_zone="UTC",
        effective_from="2026-06-02",
        effective_until="2026-06-03",
        rules=[{"weekday": wd, "start": "10:00", "end": "11:00"} for wd in range(7)],
    )
    session_type = await new_type(client, coach)
    starts = await offered(
        db, settings, coach, session_type["id"], utc(2026, 6, 1), utc(2026, 6, 6),
        now=utc(2026, 5, 1),
    )  # fmt: skip
    assert starts == [utc(2026, 6, 2, 10), utc(2026, 6, 3, 10)]


async def test_notice_and_booking_window(client, coach, db, settings):
    await add_hours(
        client,
        coach,
        time_zone="UTC",
        rules=[{"weekday": wd, "start": "09:00", "end": "11:00"} for wd in range(7)],
    )
    session_type = await new_type(
        client, coach, min_notice_minutes=90, booking_window_days=2, duration_minutes=60
    )
    now = utc(2026, 6, 1, 8, 0)
    starts = await offered(
        db, settings, coach, session_type["id"], utc(2026, 6, 1), utc(2026, 6, 10), now=now
    )
    assert starts == [
        # 09:30 is the first start 90 minutes after 08:00; 10:00 is the last that fits.
        utc(2026, 6, 1, 9, 30),
        utc(2026, 6, 1, 9, 45),
        utc(2026, 6, 1, 10, 0),
        *(utc(2026, 6, 2, 9) + timedelta(minutes=15 * i) for i in range(5)),
        # The window closes at 2026-06-03 08:00, exactly two days after now.
    ]


async def test_starts_two_days_out_are_offered_up_to_the_window_edge(client, coach, db, settings):
    await add_hours(
        client, coach, time_zone="UTC", rules=[{"weekday": 2, "start": "09:00", "end": "10:00"}]
    )
    session_type = await new_type(client, coach, booking_window_days=2)
    at_edge = await offered(
        db, settings, coach, session_type["id"], utc(2026, 6, 1), utc(2026, 6, 5),
        now=utc(2026, 6, 1, 9),
    )  # fmt: skip
    assert at_edge == [utc(2026, 6, 3, 9)]  # Wednesday 09:00 is exactly two days out


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (utc(2026, 6, 10), utc(2026, 6, 1)),
        (utc(2026, 6, 1), utc(2026, 8, 3)),  # 63 days, more than scheduling_max_range_days
        (datetime(2026, 6, 1), datetime(2026, 6, 2)),
    ],
)
async def test_offered_starts_refuses_bad_ranges(client, coach, db, settings, start, end):
    session_type = await new_type(client, coach)
    with pytest.raises(ValidationFailed):
        await offered(db, settings, coach, session_type["id"], start, end, now=utc(2026, 5, 1))


async def test_four_weeks_of_starts_from_preloaded_availability(client, coach, db, settings):
    await add_hours(
        client,
        coach,
        time_zone="America/New_York",
        rules=[{"weekday": wd, "start": "08:00", "end": "18:00"} for wd in range(5)],
        overrides=[{"date": "2026-06-05", "kind": "unavailable"}],
    )
    session_type = await new_type(client, coach)
    async with db.transaction(coach.tenant_id, coach.user_id) as session:
        st = await service.session_type_for_booking(session, uuid.UUID(session_type["id"]))
        loaded = await service.coach_availability(session, coach.user_id)
        starts = await service.offered_starts(
            session,
            st,
            utc(2026, 6, 1),
            utc(2026, 6, 29),
            now=utc(2026, 5, 1),
            settings=settings,
            availability=loaded,
        )
        first_offered = await service.is_offered(
            session, st, starts[0], now=utc(2026, 5, 1), settings=settings
        )
        off_grid = await service.is_offered(
            session, st, starts[0] + timedelta(minutes=5), now=utc(2026, 5, 1), settings=settings
        )
    assert len(starts) == 19 * 37  # 20 weekdays less the day off; 08:00-17:00 by 15 minutes
    assert starts == sorted(set(starts))
    assert starts[0] == utc(2026, 6, 1, 12)  # 08:00 EDT
    assert first_offered and not off_grid


def test_openapi_documents_the_request_shapes(app):
    spec = app.openapi()
    body = spec["paths"][AVAILABILITY]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"].endswith("/AvailabilityIn")
    schemas = spec["components"]["schemas"]
    assert {"rules", "overrides", "time_zone"} <= set(schemas["AvailabilityIn"]["properties"])
    assert "/scheduling/availability/rules/{rule_id}" in spec["paths"]
    assert "/scheduling/availability/overrides/{override_id}" in spec["paths"]
