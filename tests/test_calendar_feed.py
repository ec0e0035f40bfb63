"""Calendar feeds: per-user revocable read-only tokens and GET /scheduling/calendar.ics,
which calendar apps fetch without a bearer token. Parsed with icalendar; tokens attacked
as an outsider would (another user's, a forged tenant prefix, revoked, orphaned)."""

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from icalendar import Calendar

from app.calendar.ics import session_uid
from app.calendar.service import MAX_ACTIVE_TOKENS
from app.main import create_app
from tests.conftest import random_client_ip
from tests.factories import Account, add_member, register_tenant
from tests.test_session_reminders import Club, insert_session, make_club

FEED = "/scheduling/calendar.ics"
TOKENS = "/scheduling/calendar-tokens"


@pytest.fixture
async def club(client) -> Club:
    return await make_club(client)


async def new_token(client: httpx.AsyncClient, account: Account) -> dict:
    response = await client.post(TOKENS, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def fetch_feed(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(FEED, params={"token": token})


async def feed_of(client: httpx.AsyncClient, token: str) -> Calendar:
    response = await fetch_feed(client, token)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/calendar")
    return Calendar.from_ical(response.content)


def uids(calendar: Calendar) -> set[str]:
    return {str(event["UID"]) for event in calendar.walk("VEVENT")}


# --- The feed ---


async def test_the_feed_lists_the_users_sessions_as_athlete_and_as_coach(
    client, superuser_conn, club
):
    other_athlete = await add_member(client, club.admin, "ATHLETE")
    mine = [
        await insert_session(superuser_conn, club, starts_in=timedelta(days=d), title="Lesson")
        for d in (1, 8)
    ]
    theirs = await insert_session(
        superuser_conn, club, starts_in=timedelta(days=3), athlete=other_athlete
    )

    athlete_feed = await feed_of(client, (await new_token(client, club.athlete))["token"])
    coach_feed = await feed_of(client, (await new_token(client, club.coach))["token"])

    assert "METHOD" not in athlete_feed  # published, not an invitation
    assert uids(athlete_feed) == {session_uid(s) for s in mine}
    assert uids(coach_feed) == {session_uid(s) for s in [*mine, theirs]}
    event = next(e for e in athlete_feed.walk("VEVENT") if str(e["UID"]) == session_uid(mine[0]))
    starts_at, ends_at = await superuser_conn.fetchrow(
        "SELECT starts_at, ends_at FROM coaching_sessions WHERE id = $1", mine[0]
    )
    assert event.decoded("DTSTART") == starts_at.replace(microsecond=0)
    assert event.decoded("DTEND") == ends_at.replace(microsecond=0)
    assert event["DTSTART"].to_ical().endswith(b"Z")
    assert str(event["SUMMARY"]) == "Lesson"
    assert str(event["LOCATION"]) == "Court 1"
    assert str(event["ORGANIZER"]) == f"mailto:{club.coach.email}"
    assert str(event["ATTENDEE"]) == f"mailto:{club.athlete.email}"
    assert str(event["STATUS"]) == "CONFIRMED"


async def test_the_feed_leaves_out_cancelled_sessions_holds_and_what_is_out_of_range(
    client, superuser_conn, club
):
    shown = [
        await insert_session(superuser_conn, club, starts_in=timedelta(days=d))
        for d in (-20, 2, 170)
    ]
    hidden = [
        await insert_session(superuser_conn, club, starts_in=timedelta(days=4), status=status)
        for status in ("cancelled", "held")
    ] + [
        await insert_session(superuser_conn, club, starts_in=timedelta(days=d)) for d in (-40, 200)
    ]

    found = uids(await feed_of(client, (await new_token(client, club.athlete))["token"]))

    assert found == {session_uid(s) for s in shown}
    assert not found & {session_uid(s) for s in hidden}


async def test_a_cancelled_session_leaves_the_feed(client, superuser_conn, club):
    session_id = await insert_session(superuser_conn, club, starts_in=timedelta(days=2))
    token = (await new_token(client, club.athlete))["token"]
    assert uids(await feed_of(client, token)) == {session_uid(session_id)}

    await superuser_conn.execute(
        "UPDATE coaching_sessions SET status = 'cancelled', cancelled_at = now() WHERE id = $1",
        session_id,
    )

    assert uids(await feed_of(client, token)) == set()


async def test_a_feed_with_no_sessions_is_an_empty_calendar(client, club):
    calendar = await feed_of(client, (await new_token(client, club.admin))["token"])
    assert calendar.walk("VEVENT") == []
    assert str(calendar["VERSION"]) == "2.0"


# --- Tokens ---


async def test_the_url_is_shown_once_and_opens_the_feed(client, superuser_conn, club):
    session_id = await insert_session(superuser_conn, club, starts_in=timedelta(days=1))
    issued = await new_token(client, club.athlete)

    url = urlsplit(issued["url"])
    assert url.path == FEED
    assert parse_qs(url.query) == {"token": [issued["token"]]}
    assert issued["webcal_url"].startswith("webcal://")
    response = await client.get(f"{url.path}?{url.query}")
    assert response.status_code == 200
    assert uids(Calendar.from_ical(response.content)) == {session_uid(session_id)}
    assert response.headers["cache-control"] == "private, no-store"

    listed = await client.get(TOKENS, headers=club.athlete.headers)
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()] == [issued["id"]]
    assert set(listed.json()[0]) == {"id", "created_at", "revoked_at"}
    secret = issued["token"].split(".", 1)[1]
    assert secret not in listed.text
    stored = await superuser_conn.fetchval(
        "SELECT token_hash FROM calendar_feed_tokens WHERE id = $1", uuid.UUID(issued["id"])
    )
    assert secret not in stored and issued["token"] != stored


async def test_a_revoked_token_gets_404(client, superuser_conn, club):
    await insert_session(superuser_conn, club, starts_in=timedelta(days=1))
    issued = await new_token(client, club.athlete)
    kept = await new_token(client, club.athlete)

    revoked = await client.delete(f"{TOKENS}/{issued['id']}", headers=club.athlete.headers)
    assert revoked.status_code == 204
    again = await client.delete(f"{TOKENS}/{issued['id']}", headers=club.athlete.headers)
    assert again.status_code == 204

    response = await fetch_feed(client, issued["token"])
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (await fetch_feed(client, kept["token"])).status_code == 200
    listed = {t["id"]: t for t in (await client.get(TOKENS, headers=club.athlete.headers)).json()}
    assert listed[issued["id"]]["revoked_at"] is not None
    assert listed[kept["id"]]["revoked_at"] is None


async def test_nobody_else_can_list_or_revoke_a_users_tokens(client, club):
    issued = await new_token(client, club.athlete)
    other_tenant = await register_tenant(client)

    for account in (club.coach, club.admin, other_tenant):
        response = await client.delete(f"{TOKENS}/{issued['id']}", headers=account.headers)
        assert response.status_code == 404, account.role
        listed = await client.get(TOKENS, headers=account.headers)
        assert issued["id"] not in listed.text

    assert (await fetch_feed(client, issued["token"])).status_code == 200


async def test_tokens_need_a_signed_in_caller(client):
    assert (await client.post(TOKENS)).status_code == 401
    assert (await client.get(TOKENS)).status_code == 401
    assert (await client.delete(f"{TOKENS}/{uuid.uuid4()}")).status_code == 401


async def test_a_user_holds_a_bounded_number_of_live_tokens(client, club):
    issued = [await new_token(client, club.coach) for _ in range(MAX_ACTIVE_TOKENS)]
    refused = await client.post(TOKENS, headers=club.coach.headers)
    assert refused.status_code == 409

    await client.delete(f"{TOKENS}/{issued[0]['id']}", headers=club.coach.headers)
    assert (await client.post(TOKENS, headers=club.coach.headers)).status_code == 201


# --- What an outsider can do with a token: nothing ---


async def test_changing_the_tenant_prefix_opens_no_other_feed(client, superuser_conn, club):
    """An attacker holds their own token and knows the victim's tenant id: the HMAC covers
    the prefix, so the lookup in the victim's tenant finds nothing."""
    await insert_session(superuser_conn, club, starts_in=timedelta(days=1))
    victim_token = (await new_token(client, club.athlete))["token"]
    attacker = await register_tenant(client)
    own = (await new_token(client, attacker))["token"]

    _, secret = own.split(".", 1)
    forged = f"{club.tenant_id.hex}.{secret}"
    response = await fetch_feed(client, forged)
    assert response.status_code == 404
    # And the victim's secret under the attacker's tenant opens nothing either.
    _, victim_secret = victim_token.split(".", 1)
    assert (
        await fetch_feed(client, f"{attacker.tenant_id.hex}.{victim_secret}")
    ).status_code == 404
    assert (await fetch_feed(client, victim_token)).status_code == 200


@pytest.mark.parametrize(
    "token",
    [
        "x",
        "not-a-tenant.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        f"{uuid.uuid4().hex}.short",
        f"{uuid.uuid4().hex}.{'a' * 43}",
        f"{uuid.uuid4().hex}",
    ],
)
async def test_a_malformed_or_unknown_token_gets_the_same_404(client, token):
    response = await fetch_feed(client, token)
    assert response.status_code == 404
    assert response.json()["detail"] == "No such calendar feed."


async def test_a_token_whose_user_left_the_tenant_gets_404(client, superuser_conn, club):
    await insert_session(superuser_conn, club, starts_in=timedelta(days=1))
    token = (await new_token(client, club.athlete))["token"]
    assert (await fetch_feed(client, token)).status_code == 200

    removed = await client.delete(
        f"/tenants/{club.tenant_id}/members/{club.athlete.user_id}", headers=club.admin.headers
    )
    assert removed.status_code == 204, removed.text

    response = await fetch_feed(client, token)
    assert response.status_code == 404
    assert response.json()["detail"] == "No such calendar feed."


async def test_a_suspended_tenants_feeds_get_404(client, superuser_conn, club):
    token = (await new_token(client, club.athlete))["token"]
    await superuser_conn.execute(
        "UPDATE tenants SET suspended = true WHERE id = $1", club.tenant_id
    )
    try:
        assert (await fetch_feed(client, token)).status_code == 404
    finally:
        await superuser_conn.execute(
            "UPDATE tenants SET suspended = false WHERE id = $1", club.tenant_id
        )
    assert (await fetch_feed(client, token)).status_code == 200


@pytest.fixture
async def limited_app(settings) -> AsyncIterator[FastAPI]:
    """An app whose per-address limit is small (5 a minute, a burst of 2)."""
    limited = settings.model_copy(
        update={"rate_limit_max_per_ip": 5, "rate_limit_burst": 2, "rate_limit_window_seconds": 60}
    )
    application = create_app(limited)
    async with LifespanManager(application):
        yield application


async def test_the_feed_is_rate_limited_per_client_address(limited_app):
    """Unauthenticated, so limited like sign-in: guessing tokens from one address stops."""
    transport = httpx.ASGITransport(app=limited_app, client=(random_client_ip(), 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        token = f"{uuid.uuid4().hex}.{'b' * 43}"
        statuses = [(await c.get(FEED, params={"token": token})).status_code for _ in range(6)]
    assert statuses[0] == 404
    assert statuses[-1] == 429
