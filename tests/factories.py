"""Test data made through the public API, as clients would (reading mail as users do)."""

import asyncio
import re
import time
import uuid
from dataclasses import dataclass
from email.message import Message
from urllib.parse import unquote

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


# What the suite's SMTP server received (the `services` fixture points this at it).
MAILBOX: list[Message] = []


def use_mailbox(messages: list[Message]) -> None:
    global MAILBOX
    MAILBOX = messages


def mails_to(email: str) -> list[Message]:
    return [m for m in list(MAILBOX) if str(m["To"]).lower() == email.lower()]


def mail_body(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(message.get_content_charset() or "utf-8")


def token_in(message: Message) -> str:
    found = re.search(r"[?&]token=([A-Za-z0-9._~%-]+)", mail_body(message))
    assert found, mail_body(message)
    return unquote(found.group(1))


async def next_mail(email: str, subject: str, *, seen: int = 0, timeout: float = 10) -> Message:
    """The first mail to `email` whose subject contains `subject`, after the first `seen`
    mails to that address; waits for it (SMTP hands it over on another thread)."""
    deadline = time.monotonic() + timeout
    while True:
        matching = [m for m in mails_to(email)[seen:] if subject in str(m["Subject"])]
        if matching:
            return matching[0]
        assert time.monotonic() < deadline, f"no mail {subject!r} to {email}"
        await asyncio.sleep(0.02)


SIGN_UP_SUBJECT = "finish signing up"
INVITATION_SUBJECT = "invited to"
RESET_SUBJECT = "Reset your Courtside password"


async def start_sign_up(client: httpx.AsyncClient, email: str, name: str = "Club") -> str:
    """Register `email` and return the token mailed to it."""
    seen = len(mails_to(email))
    response = await client.post(
        "/auth/register", json={"email": email, "name": "Admin", "tenant_name": name}
    )
    assert response.status_code == 202, response.text
    return token_in(await next_mail(email, SIGN_UP_SUBJECT, seen=seen))


async def register_tenant(client: httpx.AsyncClient, name: str = "Club") -> Account:
    """A new tenant and its ADMIN, signed up and verified through the mailed link."""
    email, password = unique_email("admin"), "correct horse battery"
    token = await start_sign_up(client, email, name)
    response = await client.post(
        "/auth/register/verify", json={"token": token, "password": password}
    )
    assert response.status_code == 201, response.text
    return _account(email, password, response.json())


async def invite(
    client: httpx.AsyncClient, admin: Account, role: str, email: str | None = None
) -> dict:
    """The invitation as the API returns it, plus the `token` the invitee was mailed."""
    email = email or unique_email(role.lower())
    seen = len(mails_to(email))
    response = await client.post(
        f"/tenants/{admin.tenant_id}/invite",
        headers=admin.headers,
        json={"email": email, "role": role},
    )
    assert response.status_code == 201, response.text
    return response.json() | {
        "token": token_in(await next_mail(email, INVITATION_SUBJECT, seen=seen))
    }


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
