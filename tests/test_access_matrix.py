"""Every space and post endpoint, called with another tenant's ids and with ids from a
space the caller is not in: 404 each, and nothing changes."""

import pytest

from tests.factories import add_member, create_post, create_space, register_tenant

PROBLEM = "application/problem+json"


@pytest.fixture
async def world(client):
    a_admin = await register_tenant(client, "A")
    a_coach = await add_member(client, a_admin, "COACH")
    a_athlete = await add_member(client, a_admin, "ATHLETE")
    a_outsider = await add_member(client, a_admin, "COACH")
    a_space = await create_space(client, a_coach, a_athlete)
    a_post = await create_post(client, a_athlete, a_space)
    b_admin = await register_tenant(client, "B")
    return {
        "a_space": a_space,
        "a_post": a_post["id"],
        "a_athlete": a_athlete,
        "same_tenant_outsider": a_outsider,
        "other_tenant_admin": b_admin,
    }


def _calls(space_id, post_id, user_id):
    return [
        ("GET", f"/spaces/{space_id}", None, None),
        ("PATCH", f"/spaces/{space_id}", None, {"name": "hijacked"}),
        ("POST", f"/spaces/{space_id}/members", None, {"user_id": user_id}),
        ("DELETE", f"/spaces/{space_id}/members/{user_id}", None, None),
        ("GET", "/posts", {"space_id": space_id}, None),
        ("POST", "/posts", None, {"space_id": space_id, "body": "intrusion"}),
        ("GET", f"/posts/{post_id}", None, None),
        ("POST", f"/posts/{post_id}/comments", None, {"body": "intrusion"}),
        ("DELETE", f"/posts/{post_id}", None, None),
    ]


@pytest.mark.parametrize("attacker", ["other_tenant_admin", "same_tenant_outsider"])
async def test_every_endpoint_is_404_for_ids_the_caller_cannot_see(
    client, world, attacker, superuser_conn
):
    account = world[attacker]
    for method, url, params, body in _calls(
        world["a_space"], world["a_post"], str(world["a_athlete"].user_id)
    ):
        response = await client.request(
            method, url, params=params, json=body, headers=account.headers
        )
        assert response.status_code == 404, (method, url, response.text)
        assert response.headers["content-type"] == PROBLEM
    # Nothing was changed by the attempts.
    space = await superuser_conn.fetchrow(
        "SELECT name FROM spaces WHERE id = $1::uuid", world["a_space"]
    )
    assert space["name"] == "Squad"
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM posts WHERE space_id = $1::uuid"
            " AND (body = 'intrusion' OR deleted_at IS NOT NULL)",
            world["a_space"],
        )
        == 0
    )
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM comments WHERE post_id = $1::uuid", world["a_post"]
        )
        == 0
    )
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM space_members WHERE space_id = $1::uuid", world["a_space"]
        )
        == 2
    )
