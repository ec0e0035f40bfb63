"""Invitations: the token reaches only the invitee's mailbox, and an existing account joins
only signed in as itself (never by a password sent with the token)."""

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from courtside.local.devstack import free_port
from tests.factories import (
    INVITATION_SUBJECT,
    invite,
    mails_to,
    next_mail,
    register_tenant,
    token_in,
    unique_email,
)

PROBLEM = "application/problem+json"


async def test_invite_response_carries_no_token_the_mail_does(client):
    admin = await register_tenant(client)
    email = unique_email("invitee")
    response = await client.post(
        f"/tenants/{admin.tenant_id}/invite",
        headers=admin.headers,
        json={"email": email, "role": "COACH"},
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "email", "role", "expires_at", "email_sent"}
    assert body["email_sent"] is True
    token = token_in(await next_mail(email, INVITATION_SUBJECT))
    # Not in any field, nor any part of it (the random half is the secret).
    assert token not in response.text and token.split(".")[1] not in response.text


async def test_attacker_cannot_join_a_victim_to_their_tenant_with_the_victims_password(client):
    """The old attack: invite the victim's address, then 'accept' with guesses of their
    password. Even holding the token and the right password, it no longer works, and a
    right and a wrong password get the same answer (no oracle, nothing to throttle)."""
    victim = await register_tenant(client, "Victim's club")
    attacker = await register_tenant(client, "Attacker's club")
    invitation = await invite(client, attacker, "ATHLETE", email=victim.email)
    right = await client.post(
        "/auth/invitations/accept",
        json={"token": invitation["token"], "password": victim.password},
    )
    wrong = await client.post(
        "/auth/invitations/accept",
        json={"token": invitation["token"], "password": "a wrong guess"},
    )
    assert right.status_code == wrong.status_code == 401
    assert right.json() == wrong.json()
    assert "access_token" not in right.text
    members = await client.get(f"/tenants/{attacker.tenant_id}/members", headers=attacker.headers)
    assert victim.email not in {m["email"] for m in members.json()["items"]}


async def test_another_signed_in_account_cannot_accept_the_victims_invitation(client):
    victim = await register_tenant(client)
    attacker = await register_tenant(client)
    invitation = await invite(client, attacker, "ADMIN", email=victim.email)
    response = await client.post(
        "/auth/invitations/accept",
        headers=attacker.headers,
        json={"token": invitation["token"]},
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM


async def test_existing_account_joins_signed_in_as_itself_without_a_password(client):
    home = await register_tenant(client)
    other = await register_tenant(client)
    invitation = await invite(client, other, "COACH", email=home.email)
    joined = await client.post(
        "/auth/invitations/accept", headers=home.headers, json={"token": invitation["token"]}
    )
    assert joined.status_code == 201
    assert joined.json()["tenant_id"] == str(other.tenant_id) and joined.json()["role"] == "COACH"
    login = await client.post(
        "/auth/login",
        json={"email": home.email, "password": home.password, "tenant_id": str(other.tenant_id)},
    )
    assert login.json()["role"] == "COACH"


async def test_signed_in_acceptance_refuses_a_password_in_the_body(client):
    home = await register_tenant(client)
    other = await register_tenant(client)
    invitation = await invite(client, other, "COACH", email=home.email)
    response = await client.post(
        "/auth/invitations/accept",
        headers=home.headers,
        json={"token": invitation["token"], "password": home.password},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


async def test_new_account_must_choose_a_password(client):
    admin = await register_tenant(client)
    invitation = await invite(client, admin, "ATHLETE")
    response = await client.post("/auth/invitations/accept", json={"token": invitation["token"]})
    assert response.status_code == 422


async def test_resend_rotates_the_token_and_the_old_one_stops_working(client):
    admin = await register_tenant(client)
    invitation = await invite(client, admin, "ATHLETE")
    seen = len(mails_to(invitation["email"]))
    resent = await client.post(
        f"/tenants/{admin.tenant_id}/invitations/{invitation['id']}/resend", headers=admin.headers
    )
    assert resent.status_code == 200 and resent.json()["email_sent"] is True
    assert "token" not in resent.json()
    new_token = token_in(await next_mail(invitation["email"], INVITATION_SUBJECT, seen=seen))
    assert new_token != invitation["token"]
    old = await client.post(
        "/auth/invitations/accept", json={"token": invitation["token"], "password": "long enough"}
    )
    assert old.status_code == 404
    new = await client.post(
        "/auth/invitations/accept", json={"token": new_token, "password": "long enough"}
    )
    assert new.status_code == 201


async def test_another_tenants_admin_cannot_resend_and_so_redirect_an_invitation(client):
    admin = await register_tenant(client)
    invitation = await invite(client, admin, "ATHLETE")
    intruder = await register_tenant(client)
    response = await client.post(
        f"/tenants/{admin.tenant_id}/invitations/{invitation['id']}/resend",
        headers=intruder.headers,
    )
    assert response.status_code == 404
    elsewhere = await client.post(
        f"/tenants/{intruder.tenant_id}/invitations/{invitation['id']}/resend",
        headers=intruder.headers,
    )
    assert elsewhere.status_code == 404


@pytest.fixture
async def client_without_smtp(settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API with its SMTP server unreachable (nothing listens on the port)."""
    application = create_app(settings.model_copy(update={"smtp_port": free_port()}))
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, client=("10.99.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c


async def test_invitation_survives_smtp_being_down_and_resend_delivers_it(
    client, client_without_smtp
):
    admin = await register_tenant(client)
    email = unique_email("invitee")
    response = await client_without_smtp.post(
        f"/tenants/{admin.tenant_id}/invite",
        headers=admin.headers,
        json={"email": email, "role": "ATHLETE"},
    )
    assert response.status_code == 201
    assert response.json()["email_sent"] is False and "token" not in response.json()
    assert mails_to(email) == []
    resent = await client.post(
        f"/tenants/{admin.tenant_id}/invitations/{response.json()['id']}/resend",
        headers=admin.headers,
    )
    assert resent.json()["email_sent"] is True
    token = token_in(await next_mail(email, INVITATION_SUBJECT))
    accepted = await client.post(
        "/auth/invitations/accept", json={"token": token, "password": "long enough"}
    )
    assert accepted.status_code == 201


async def test_resending_an_accepted_invitation_is_gone(client):
    admin = await register_tenant(client)
    invitation = await invite(client, admin, "ATHLETE")
    await client.post(
        "/auth/invitations/accept", json={"token": invitation["token"], "password": "long enough"}
    )
    response = await client.post(
        f"/tenants/{admin.tenant_id}/invitations/{invitation['id']}/resend", headers=admin.headers
    )
    assert response.status_code == 410


async def test_unknown_invitation_id_is_404(client):
    admin = await register_tenant(client)
    response = await client.post(
        f"/tenants/{admin.tenant_id}/invitations/{uuid.uuid4()}/resend", headers=admin.headers
    )
    assert response.status_code == 404
