"""`courtside seed`: the demo tenant, its users and the demo coach's bookable hours, as a
newcomer meets them after `make dev`: signed in with the demo passwords, a lesson offered,
open slots, and a booking."""

from datetime import UTC, datetime, timedelta

from courtside.local.seed import DEMO_USERS, seed_demo


async def _login(client, email: str, password: str) -> dict:
    answer = await client.post("/auth/login", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_the_demo_athlete_books_the_demo_coachs_lesson(client, settings, superuser_conn):
    first = await seed_demo(settings)
    assert await seed_demo(settings) == first  # again: nothing doubled
    [
        (admin_email, admin_password, *_),
        (coach_email, *_),
        (athlete_email, athlete_password, *_),
    ] = DEMO_USERS
    assert await superuser_conn.fetchval(
        "SELECT count(*) FROM tenant_memberships WHERE tenant_id = $1", first
    ) == len(DEMO_USERS)
    athlete = await _login(client, athlete_email, athlete_password)
    headers = {"Authorization": f"Bearer {athlete['access_token']}"}
    coach_id = await superuser_conn.fetchval("SELECT id FROM users WHERE email = $1", coach_email)
    types = (
        await client.get(
            "/scheduling/session-types", headers=headers, params={"coach_id": str(coach_id)}
        )
    ).json()["items"]
    assert [t["title"] for t in types] == ["Private lesson"]
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM availability_rules WHERE coach_id = $1", coach_id
        )
        == 5
    )

    start = datetime.now(UTC) + timedelta(days=1)
    open_slots = await client.get(
        f"/scheduling/availability/{coach_id}",
        headers=headers,
        params={
            "from": start.isoformat(),
            "to": (start + timedelta(days=7)).isoformat(),
            "tz": "Europe/London",
        },
    )
    assert open_slots.status_code == 200, open_slots.text
    slots = open_slots.json()["slots"]
    assert slots  # a week always holds weekdays
    booked = await client.post(
        "/scheduling/sessions/book",
        headers=headers,
        json={
            "coach_id": str(coach_id),
            "session_type_id": types[0]["id"],
            "start": slots[0]["start"],
        },
    )
    assert booked.status_code == 201, booked.text
    admin = await _login(client, admin_email, admin_password)
    assert admin["role"] == "ADMIN"
