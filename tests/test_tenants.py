import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app.infra.db import TENANT_CONTEXT_SQL
from tests.factories import add_member, invite, register_tenant, unique_email

PROBLEM = "application/problem+json"


async def test_member_reads_own_tenant(client):
    admin = await register_tenant(client, "Northside")
    athlete = await add_member(client, admin, "ATHLETE")
    response = await client.get(f"/tenants/{admin.tenant_id}", headers=athlete.headers)
    assert response.status_code == 200 and response.json()["name"] == "Northside"


async def test_admin_invites_and_invitee_joins_with_that_role(client):
    admin = await register_tenant(client)
    coach = await add_member(client, admin, "COACH")
    assert coach.tenant_id == admin.tenant_id and coach.role == "COACH"
    login = await client.post(
        "/auth/login", json={"email": coach.email, "password": coach.password}
    )
    assert login.json()["role"] == "COACH"


@pytest.mark.parametrize("role", ["COACH", "ATHLETE", "SCHEDULER"])
async def test_only_an_admin_can_invite(client, role):
    admin = await register_tenant(client)
    member = await add_member(client, admin, role)
    response = await client.post(
        f"/tenants/{admin.tenant_id}/invite",
        headers=member.headers,
        json={"email": unique_email(), "role": "ADMIN"},
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM


async def test_invitation_is_single_use(client):
    admin = await register_tenant(client)
    invitation = await invite(client, admin, "ATHLETE")
    body = {"token": invitation["token"], "password": "a fine password"}
    assert (await client.post("/auth/invitations/accept", json=body)).status_code == 201
    again = await client.post("/auth/invitations/accept", json=body)
    assert again.status_code == 410
    assert again.headers["content-type"] == PROBLEM


async def test_expired_invitation_is_refused(client, runtime_conn):
    admin = await register_tenant(client)
    invitation = await invite(client, admin, "ATHLETE")
    async with runtime_conn.transaction():
        await runtime_conn.execute(TENANT_CONTEXT_SQL, str(admin.tenant_id), "")
        await runtime_conn.execute(
            "UPDATE invitations SET expires_at = $1 WHERE id = $2",
            datetime.now(UTC) - timedelta(seconds=1),
            uuid.UUID(invitation["id"]),
        )
    response = await client.post(
        "/auth/invitations/accept",
        json={"token": invitation["token"], "password": "a fine password"},
    )
    assert response.status_code == 410


async def test_inviting_an_existing_member_is_a_conflict(client):
    admin = await register_tenant(client)
    response = await client.post(
        f"/tenants/{admin.tenant_id}/invite",
        headers=admin.headers,
        json={"email": admin.email, "role": "COACH"},
    )
    assert response.status_code == 409


async def test_members_are_paginated_without_gaps_or_repeats(client):
    admin = await register_tenant(client)
    for role in ["COACH", "ATHLETE", "ATHLETE", "SCHEDULER"]:
        await add_member(client, admin, role)
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (
            await client.get(
                f"/tenants/{admin.tenant_id}/members", headers=admin.headers, params=params
            )
        ).json()
        assert len(page["items"]) <= 2
        seen += [m["user_id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5


async def test_athletes_cannot_list_members(client):
    admin = await register_tenant(client)
    athlete = await add_member(client, admin, "ATHLETE")
    response = await client.get(f"/tenants/{admin.tenant_id}/members", headers=athlete.headers)
    assert response.status_code == 403


async def test_bad_cursor_is_400_not_500(client):
    admin = await register_tenant(client)
    response = await client.get(
        f"/tenants/{admin.tenant_id}/members", headers=admin.headers, params={"cursor": "garbage!!"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM


async def test_role_change_is_audited(client):
    admin = await register_tenant(client)
    athlete = await add_member(client, admin, "ATHLETE")
    response = await client.patch(
        f"/tenants/{admin.tenant_id}/members/{athlete.user_id}",
        headers=admin.headers,
        json={"role": "COACH"},
    )
    assert response.status_code == 200 and response.json()["role"] == "COACH"
    audit = (
        await client.get(
            "/admin/audit", headers=admin.headers, params={"action": "member.role_changed"}
        )
    ).json()["items"]
    assert audit[0]["details"] == {"from": "ATHLETE", "to": "COACH"}
    assert audit[0]["actor_user_id"] == str(admin.user_id)


async def test_invites_are_audited(client):
    admin = await register_tenant(client)
    invitation = await invite(client, admin, "ATHLETE")
    audit = (
        await client.get("/admin/audit", headers=admin.headers, params={"action": "member.invited"})
    ).json()["items"]
    assert [a["target_id"] for a in audit] == [invitation["id"]]
    assert invitation["token"] not in str(audit)


async def test_the_last_admin_cannot_be_demoted(client):
    admin = await register_tenant(client)
    response = await client.patch(
        f"/tenants/{admin.tenant_id}/members/{admin.user_id}",
        headers=admin.headers,
        json={"role": "COACH"},
    )
    assert response.status_code == 409


async def test_non_admin_cannot_change_roles(client):
    admin = await register_tenant(client)
    coach = await add_member(client, admin, "COACH")
    response = await client.patch(
        f"/tenants/{admin.tenant_id}/members/{coach.user_id}",
        headers=coach.headers,
        json={"role": "ADMIN"},
    )
    assert response.status_code == 403


async def test_removal_is_audited(client):
    admin = await register_tenant(client)
    coach = await add_member(client, admin, "COACH")
    response = await client.delete(
        f"/tenants/{admin.tenant_id}/members/{coach.user_id}", headers=admin.headers
    )
    assert response.status_code == 204
    audit = (
        await client.get("/admin/audit", headers=admin.headers, params={"action": "member.removed"})
    ).json()["items"]
    assert [(a["target_id"], a["details"]) for a in audit] == [
        (str(coach.user_id), {"role": "COACH"})
    ]
    assert audit[0]["actor_user_id"] == str(admin.user_id)
    members = await client.get(f"/tenants/{admin.tenant_id}/members", headers=admin.headers)
    assert str(coach.user_id) not in {m["user_id"] for m in members.json()["items"]}


@pytest.mark.parametrize("role", ["COACH", "ATHLETE", "SCHEDULER"])
async def test_non_admin_cannot_remove_members(client, role):
    admin = await register_tenant(client)
    member = await add_member(client, admin, role)
    other = await add_member(client, admin, "ATHLETE")
    response = await client.delete(
        f"/tenants/{admin.tenant_id}/members/{other.user_id}", headers=member.headers
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM


async def test_removing_someone_who_is_not_a_member_is_404(client):
    admin = await register_tenant(client)
    response = await client.delete(
        f"/tenants/{admin.tenant_id}/members/{uuid.uuid4()}", headers=admin.headers
    )
    assert response.status_code == 404


async def test_only_admins_read_the_audit_log(client):
    admin = await register_tenant(client)
    coach = await add_member(client, admin, "COACH")
    assert (await client.get("/admin/audit", headers=coach.headers)).status_code == 403


class TestAnotherTenantsIdsAreNotFound:
    """A token of tenant A gets 404 for tenant B's ids, on every tenant endpoint."""

    @pytest.fixture
    async def a_and_b(self, client):
        a = await register_tenant(client, "A")
        b = await register_tenant(client, "B")
        b_member = await add_member(client, b, "ATHLETE")
        return a, b, b_member

    async def test_get_tenant(self, client, a_and_b):
        a, b, _ = a_and_b
        response = await client.get(f"/tenants/{b.tenant_id}", headers=a.headers)
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM

    async def test_invite(self, client, a_and_b):
        a, b, _ = a_and_b
        response = await client.post(
            f"/tenants/{b.tenant_id}/invite",
            headers=a.headers,
            json={"email": unique_email(), "role": "ADMIN"},
        )
        assert response.status_code == 404

    async def test_members(self, client, a_and_b):
        a, b, _ = a_and_b
        response = await client.get(f"/tenants/{b.tenant_id}/members", headers=a.headers)
        assert response.status_code == 404

    async def test_change_role_of_another_tenants_user(self, client, a_and_b):
        a, b, b_member = a_and_b
        via_b = await client.patch(
            f"/tenants/{b.tenant_id}/members/{b_member.user_id}",
            headers=a.headers,
            json={"role": "ADMIN"},
        )
        via_a = await client.patch(
            f"/tenants/{a.tenant_id}/members/{b_member.user_id}",
            headers=a.headers,
            json={"role": "ADMIN"},
        )
        assert via_b.status_code == via_a.status_code == 404

    async def test_remove_another_tenants_member(self, client, a_and_b):
        a, b, b_member = a_and_b
        via_b = await client.delete(
            f"/tenants/{b.tenant_id}/members/{b_member.user_id}", headers=a.headers
        )
        via_a = await client.delete(
            f"/tenants/{a.tenant_id}/members/{b_member.user_id}", headers=a.headers
        )
        assert via_b.status_code == via_a.status_code == 404
        assert via_b.headers["content-type"] == PROBLEM
        still = await client.get(f"/tenants/{b.tenant_id}", headers=b_member.headers)
        assert still.status_code == 200

    async def test_invitation_token_cannot_be_replayed_into_another_tenant(self, client, a_and_b):
        a, b, _ = a_and_b
        invitation = await invite(client, a, "ADMIN")
        forged = b.tenant_id.hex + "." + invitation["token"].split(".", 1)[1]
        response = await client.post(
            "/auth/invitations/accept", json={"token": forged, "password": "a fine password"}
        )
        assert response.status_code == 404
