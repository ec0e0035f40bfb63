"""A member's role and session are the database's, not the access token's.

Each attack uses the credential the attacker still holds: the access (and refresh) token
issued before they were demoted, removed or signed out.
"""

import asyncio
import time

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.infra.db import TENANT_CONTEXT_SQL
from app.main import create_app
from tests.conftest import random_client_ip
from tests.factories import add_member, create_club, register_tenant

PROBLEM = "application/problem+json"
REFUSED = (401, 403)


async def eventually(request, done, timeout: float = 10.0):
    """Repeat `request` until `done(response)`; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        response = await request()
        if done(response):
            return response
        assert time.monotonic() < deadline, (response.status_code, response.text)
        await asyncio.sleep(0.02)


async def _set_role(conn, tenant_id, user_id, role: str) -> None:
    """A change made elsewhere (another replica): nothing in this process is told."""
    async with conn.transaction():
        await conn.execute(TENANT_CONTEXT_SQL, str(tenant_id), "")
        await conn.execute(
            "UPDATE tenant_memberships SET role = $1 WHERE tenant_id = $2 AND user_id = $3",
            role,
            tenant_id,
            user_id,
        )


async def _admins(conn, tenant_id) -> int:
    async with conn.transaction():
        await conn.execute(TENANT_CONTEXT_SQL, str(tenant_id), "")
        return await conn.fetchval(
            "SELECT count(*) FROM tenant_memberships WHERE tenant_id = $1 AND role = 'ADMIN'",
            tenant_id,
        )


async def test_demoted_admin_cannot_use_their_old_token_to_make_themselves_admin_again(client):
    owner = await register_tenant(client)
    deputy = await add_member(client, owner, "ADMIN")
    demoted = await client.patch(
        f"/tenants/{owner.tenant_id}/members/{deputy.user_id}",
        headers=owner.headers,
        json={"role": "COACH"},
    )
    assert demoted.status_code == 200

    # The deputy's token still says ADMIN; the database says otherwise.
    await eventually(
        lambda: client.get("/admin/audit", headers=deputy.headers),
        lambda r: r.status_code != 200,
    )
    attack = await client.patch(
        f"/tenants/{owner.tenant_id}/members/{deputy.user_id}",
        headers=deputy.headers,
        json={"role": "ADMIN"},
    )
    assert attack.status_code in REFUSED
    assert attack.headers["content-type"] == PROBLEM
    members = await client.get(f"/tenants/{owner.tenant_id}/members", headers=owner.headers)
    roles = {m["user_id"]: m["role"] for m in members.json()["items"]}
    assert roles[str(deputy.user_id)] == "COACH"


async def test_the_role_comes_from_the_database_even_when_the_token_says_admin(
    client, runtime_conn
):
    """Another replica demoted them (this process was not told): within the cache period
    the old ADMIN token acts as a COACH, 403 on ADMIN routes."""
    owner = await register_tenant(client)
    deputy = await add_member(client, owner, "ADMIN")
    assert (await client.get("/admin/audit", headers=deputy.headers)).status_code == 200

    await _set_role(runtime_conn, owner.tenant_id, deputy.user_id, "COACH")

    refused = await eventually(
        lambda: client.get("/admin/audit", headers=deputy.headers),
        lambda r: r.status_code != 200,
    )
    assert refused.status_code == 403
    assert refused.headers["content-type"] == PROBLEM
    patch = await client.patch(
        f"/tenants/{owner.tenant_id}/members/{deputy.user_id}",
        headers=deputy.headers,
        json={"role": "ADMIN"},
    )
    assert patch.status_code == 403
    # Still a member with a live session: COACH routes work.
    assert (
        await client.get(f"/tenants/{owner.tenant_id}/members", headers=deputy.headers)
    ).status_code == 200


async def test_removed_member_loses_the_tenant_and_the_feed_with_their_old_token(client):
    club = await create_club(client)
    athlete, admin, space = club["athlete"], club["admin"], club["space"]
    feed = f"/posts?space_id={space}"
    assert (await client.get(feed, headers=athlete.headers)).status_code == 200

    removed = await client.delete(
        f"/tenants/{admin.tenant_id}/members/{athlete.user_id}", headers=admin.headers
    )
    assert removed.status_code == 204

    for path in (f"/tenants/{admin.tenant_id}", feed):
        response = await eventually(
            lambda p=path: client.get(p, headers=athlete.headers),
            lambda r: r.status_code != 200,
        )
        assert response.status_code in REFUSED, path
        assert response.headers["content-type"] == PROBLEM
    again = await client.post("/auth/refresh", json={"refresh_token": athlete.refresh_token})
    assert again.status_code == 401


async def test_removed_member_is_refused_even_where_this_process_was_not_told(client, runtime_conn):
    club = await create_club(client)
    athlete, admin = club["athlete"], club["admin"]
    assert (await client.get(f"/tenants/{admin.tenant_id}", headers=athlete.headers)).is_success
    async with runtime_conn.transaction():
        await runtime_conn.execute(TENANT_CONTEXT_SQL, str(admin.tenant_id), "")
        await runtime_conn.execute(
            "DELETE FROM tenant_memberships WHERE tenant_id = $1 AND user_id = $2",
            admin.tenant_id,
            athlete.user_id,
        )
    response = await eventually(
        lambda: client.get(f"/posts?space_id={club['space']}", headers=athlete.headers),
        lambda r: r.status_code != 200,
    )
    assert response.status_code == 401


async def test_logout_ends_the_access_token_at_once(client):
    admin = await register_tenant(client)
    coach = await add_member(client, admin, "COACH")
    assert (await client.get(f"/tenants/{admin.tenant_id}", headers=coach.headers)).is_success

    out = await client.post("/auth/logout", json={"refresh_token": coach.refresh_token})
    assert out.status_code == 204

    # No waiting: this process forgot the session when it revoked it.
    response = await client.get(f"/tenants/{admin.tenant_id}", headers=coach.headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    # Other sessions of the same user are not affected.
    login = await client.post(
        "/auth/login", json={"email": coach.email, "password": coach.password}
    )
    fresh = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await client.get(f"/tenants/{admin.tenant_id}", headers=fresh)).status_code == 200


async def test_logout_elsewhere_ends_the_access_token_within_the_cache_period(client, runtime_conn):
    """Logged out through another replica: the revoked family is seen within seconds."""
    admin = await register_tenant(client)
    assert (await client.get(f"/tenants/{admin.tenant_id}", headers=admin.headers)).is_success
    async with runtime_conn.transaction():
        await runtime_conn.execute(TENANT_CONTEXT_SQL, str(admin.tenant_id), "")
        await runtime_conn.execute(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE tenant_id = $1 AND user_id = $2",
            admin.tenant_id,
            admin.user_id,
        )
    response = await eventually(
        lambda: client.get(f"/tenants/{admin.tenant_id}", headers=admin.headers),
        lambda r: r.status_code != 200,
    )
    assert response.status_code == 401


async def test_a_password_reset_ends_access_tokens_in_every_tenant(client, superuser_conn):
    """The reset revokes refresh tokens only where the user landed; elsewhere their older
    sessions end by the reset's time (set directly here: the reset flow has its own tests)."""
    admin = await register_tenant(client)
    assert (await client.get(f"/tenants/{admin.tenant_id}", headers=admin.headers)).is_success
    await superuser_conn.execute(
        "UPDATE users SET password_changed_at = now() WHERE id = $1", admin.user_id
    )
    response = await eventually(
        lambda: client.get(f"/tenants/{admin.tenant_id}", headers=admin.headers),
        lambda r: r.status_code != 200,
    )
    assert response.status_code == 401
    login = await client.post(
        "/auth/login", json={"email": admin.email, "password": admin.password}
    )
    fresh = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await client.get(f"/tenants/{admin.tenant_id}", headers=fresh)).status_code == 200


async def test_after_a_role_change_the_old_tokens_stop_working(client):
    admin = await register_tenant(client)
    coach = await add_member(client, admin, "COACH")
    changed = await client.patch(
        f"/tenants/{admin.tenant_id}/members/{coach.user_id}",
        headers=admin.headers,
        json={"role": "ATHLETE"},
    )
    assert changed.status_code == 200

    refreshed = await client.post("/auth/refresh", json={"refresh_token": coach.refresh_token})
    assert refreshed.status_code == 401
    old = await client.get(f"/tenants/{admin.tenant_id}", headers=coach.headers)
    assert old.status_code == 401
    # Signing in again gives a session with the new role.
    login = await client.post(
        "/auth/login", json={"email": coach.email, "password": coach.password}
    )
    assert login.status_code == 200 and login.json()["role"] == "ATHLETE"


async def test_the_last_admin_cannot_remove_themselves(client, runtime_conn):
    admin = await register_tenant(client)
    response = await client.delete(
        f"/tenants/{admin.tenant_id}/members/{admin.user_id}", headers=admin.headers
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert await _admins(runtime_conn, admin.tenant_id) == 1
    assert (await client.get("/admin/audit", headers=admin.headers)).status_code == 200


async def test_an_admin_may_step_down_while_another_admin_remains(client, runtime_conn):
    owner = await register_tenant(client)
    deputy = await add_member(client, owner, "ADMIN")
    response = await client.patch(
        f"/tenants/{owner.tenant_id}/members/{owner.user_id}",
        headers=owner.headers,
        json={"role": "COACH"},
    )
    assert response.status_code == 200
    assert await _admins(runtime_conn, owner.tenant_id) == 1
    last = await client.patch(
        f"/tenants/{owner.tenant_id}/members/{deputy.user_id}",
        headers=deputy.headers,
        json={"role": "COACH"},
    )
    assert last.status_code == 409


def _demote(client, actor, target):
    return client.patch(
        f"/tenants/{actor.tenant_id}/members/{target.user_id}",
        headers=actor.headers,
        json={"role": "COACH"},
    )


def _remove(client, actor, target):
    return client.delete(
        f"/tenants/{actor.tenant_id}/members/{target.user_id}", headers=actor.headers
    )


@pytest.fixture
async def steady_client(settings):
    """A client of an app whose caches outlive the test: both racing requests are
    authenticated from memory, so both reach the ADMIN count before either commits."""
    steady = settings.model_copy(
        update={"membership_cache_seconds": 10, "tenant_policy_cache_seconds": 10}
    )
    application = create_app(steady)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, client=(random_client_ip(), 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://courtside.test") as c:
            yield c


@pytest.mark.parametrize(
    ("change", "done"), [(_demote, 200), (_remove, 204)], ids=["demote", "remove"]
)
async def test_two_admins_acting_on_each_other_at_once_leave_one_admin(
    steady_client, runtime_conn, change, done
):
    """Without the lock on the tenant's ADMIN memberships, both requests pass the count
    before either commits, both succeed, and the tenant is left with no ADMIN."""
    client = steady_client
    for _ in range(5):
        first = await register_tenant(client)
        second = await add_member(client, first, "ADMIN")
        for admin in (first, second):  # both sessions known to the app before the race
            assert (await client.get("/admin/audit", headers=admin.headers)).status_code == 200
        results = await asyncio.gather(change(client, first, second), change(client, second, first))
        statuses = sorted(r.status_code for r in results)
        assert statuses == [done, 409], [r.text for r in results]
        assert await _admins(runtime_conn, first.tenant_id) == 1
