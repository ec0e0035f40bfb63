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
    return Account(email, password, uuid.UUID(body["user_id"]), uuid.UUID(body["tenant_id"]),
                   body["role"], body["access_token"], body["refresh_token"])


async def register_tenant(client: httpx.AsyncClient, name: str = "Club") -> Account:
    email, password = unique_email("admin"), "correct horse battery"
    response = await client.post("/auth/register", json={
        "email": email, "password": password, "name": "Admin", "tenant_name": name})
    assert response.status_code == 201, response.text
    return _account(email, password, response.json())


async def invite(client: httpx.AsyncClient, admin: Account, role: str,
                 email: str | None = None) -> dict:
    response = await client.post(f"/tenants/{admin.tenant_id}/invite", headers=admin.headers,
                                 json={"email": email or unique_email(role.lower()), "role": role})
    assert response.status_code == 201, response.text
    return response.json()


async def add_member(client: httpx.AsyncClient, admin: Account, role: str) -> Account:
    invitation = await invite(client, admin, role)
    password = "another good password"
    response = await client.post("/auth/invitations/accept", json={
        "token": invitation["token"], "password": password, "name": role.title()})
    assert response.status_code == 201, response.text
    return _account(invitation["email"], password, response.json())
