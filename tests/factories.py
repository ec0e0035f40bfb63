"""Test data made through the public API, as clients would."""

import uuid
from dataclasses import dataclass

import httpx


@dataclass
class Account:
    email: str
    password: str
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


def _account(email: str, password: str, body: dict) -> Account:
    return Account(
        email,
        password,
        uuid.UUID(body["user_id"]),
        uuid.UUID(body["tenant_id"]),
        body["role"],
        body["access_token"],
        body["refresh_token"],
    )


async def register_tenant(client: httpx.AsyncClient, name: str = "Club") -> Account:
    email, password = unique_email("admin"), "correct horse battery"
    response = await client.post(
        "/auth/register",
        json={"email": email, "password": password, "name": "Admin", "tenant_name": name},
    )
    assert response.status_code == 201, response.text
    return _account(email, password, response.json())


async def invite(
    client: httpx.AsyncClient, admin: Account, role: str, email: str | None = None
) -> dict:
    response = await client.post(
        f"/tenants/{admin.tenant_id}/invite",
        headers=admin.headers,
        json={"email": email or unique_email(role.lower()), "role": role},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def add_member(client: httpx.AsyncClient, admin: Account, role: str) -> Account:
    invitation = await invite(client, admin, role)
    password = "another good password"
    response = await client.post(
        "/auth/invitations/accept",
        json={"token": invitation["token"], "password": password, "name": role.title()},
    )
    assert response.status_code == 201, response.text
    return _account(invitation["email"], password, response.json())


async def create_space(
    client: httpx.AsyncClient, coach: Account, *members: Account, name: str = "Squad"
) -> str:
    response = await client.post("/spaces", headers=coach.headers, json={"name": name})
    assert response.status_code == 201, response.text
    space_id = response.json()["id"]
    for member in members:
        added = await client.post(
            f"/spaces/{space_id}/members",
            headers=coach.headers,
            json={"user_id": str(member.user_id)},
        )
        assert added.status_code == 204, added.text
    return space_id


async def create_post(
    client: httpx.AsyncClient, author: Account, space_id: str, body: str = "Look at my serve"
) -> dict:
    response = await client.post(
        "/posts", headers=author.headers, json={"space_id": space_id, "body": body}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def create_club(
    client: httpx.AsyncClient,
    *,
    athletes: tuple[str, ...] = ("athlete",),
    others: tuple[str, ...] = ("outsider",),
    other_coaches: tuple[str, ...] = (),
) -> dict:
    """A tenant with an ADMIN and a COACH whose space holds `athletes`; `others` are
    athletes of the tenant outside the space. Keys: admin, coach, space, and each name."""
    admin = await register_tenant(client)
    coach = await add_member(client, admin, "COACH")
    club: dict = {"admin": admin, "coach": coach}
    for name in other_coaches:
        club[name] = await add_member(client, admin, "COACH")
    for name in (*athletes, *others):
        club[name] = await add_member(client, admin, "ATHLETE")
    club["space"] = await create_space(client, coach, *(club[n] for n in athletes))
    return club
