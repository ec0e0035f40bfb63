"""Proof of email ownership: sign-up and password reset go through the mailbox, and the
answers never say whether an address has an account."""

from urllib.parse import quote

from app.auth import email_tokens
from tests.factories import (
    RESET_SUBJECT,
    SIGN_UP_SUBJECT,
    add_member,
    invite,
    mails_to,
    next_mail,
    register_tenant,
    start_sign_up,
    token_in,
    unique_email,
)

PROBLEM = "application/problem+json"


async def _login(client, email: str, password: str, **extra: str):
    return await client.post("/auth/login", json={"email": email, "password": password} | extra)


async def test_squatter_who_cannot_read_the_mailbox_gets_no_identity(client, superuser_conn):
    victim = unique_email("victim")
    squat = await client.post(
        "/auth/register", json={"email": victim, "name": "Squatter", "tenant_name": "Squat"}
    )
    assert squat.status_code == 202 and "access_token" not in squat.text
    assert await superuser_conn.fetchval("SELECT count(*) FROM users WHERE email = $1", victim) == 0
    # Whatever password the squatter tries, there is nothing to sign in to.
    assert (await _login(client, victim, "correct horse battery")).status_code == 401


async def test_a_password_cannot_be_preset_at_sign_up(client):
    """Registration takes no password: nobody can choose the password of an address they
    don't read (and no Argon2 is spent on an unproven request)."""
    response = await client.post(
        "/auth/register",
        json={
            "email": unique_email(),
            "password": "squatters password",
            "name": "X",
            "tenant_name": "T",
        },
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


async def test_real_owner_registers_and_verifies_after_a_squatter_tried(client):
    victim = unique_email("victim")
    await client.post(
        "/auth/register", json={"email": victim, "name": "Squatter", "tenant_name": "Squat"}
    )
    token = await start_sign_up(client, victim, "Owner's club")
    done = await client.post(
        "/auth/register/verify", json={"token": token, "password": "the owners password"}
    )
    assert done.status_code == 201 and done.json()["role"] == "ADMIN"
    assert (await _login(client, victim, "the owners password")).status_code == 200


async def test_a_sign_up_link_works_once(client):
    email = unique_email()
    token = await start_sign_up(client, email)
    first = await client.post(
        "/auth/register/verify", json={"token": token, "password": "first password"}
    )
    assert first.status_code == 201
    again = await client.post(
        "/auth/register/verify", json={"token": token, "password": "second password"}
    )
    assert again.status_code == 409
    assert (await _login(client, email, "second password")).status_code == 401


async def test_forged_or_expired_sign_up_links_are_refused(client, settings):
    email = unique_email()
    token = await start_sign_up(client, email)
    head, payload, signature = token.split(".")
    tampered = f"{head}.{payload}.{signature[::-1]}"
    expired = email_tokens.sign_up_token(
        settings.model_copy(update={"email_verification_ttl_seconds": -60}),
        email_tokens.SignUp(email, "A", "T", None),
    )
    for bad in (tampered, expired):
        response = await client.post(
            "/auth/register/verify", json={"token": bad, "password": "long enough"}
        )
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM


async def test_register_for_a_member_of_another_tenant_reveals_nothing(client):
    """An address that joined by invitation (no tenant of its own) answers like any other."""
    admin = await register_tenant(client)
    member = await add_member(client, admin, "ATHLETE")
    taken = await client.post(
        "/auth/register", json={"email": member.email, "name": "X", "tenant_name": "T"}
    )
    fresh = await client.post(
        "/auth/register", json={"email": unique_email(), "name": "X", "tenant_name": "T"}
    )
    assert (taken.status_code, taken.json()) == (fresh.status_code, fresh.json())
    assert all(SIGN_UP_SUBJECT not in str(m["Subject"]) for m in mails_to(member.email))


async def test_forgot_password_answers_the_same_for_unknown_addresses(client):
    admin = await register_tenant(client)
    unknown = unique_email()
    known_answer = await client.post("/auth/password/forgot", json={"email": admin.email})
    unknown_answer = await client.post("/auth/password/forgot", json={"email": unknown})
    assert known_answer.status_code == unknown_answer.status_code == 202
    assert known_answer.json() == unknown_answer.json()
    await next_mail(admin.email, RESET_SUBJECT)
    assert mails_to(unknown) == []


async def _reset_token(client, email: str) -> str:
    seen = len(mails_to(email))
    await client.post("/auth/password/forgot", json={"email": email})
    return token_in(await next_mail(email, RESET_SUBJECT, seen=seen))


async def test_reset_link_sets_the_password_once(client):
    admin = await register_tenant(client)
    token = await _reset_token(client, admin.email)
    done = await client.post(
        "/auth/password/reset", json={"token": token, "password": "a brand new password"}
    )
    assert done.status_code == 204
    assert (await _login(client, admin.email, "a brand new password")).status_code == 200
    assert (await _login(client, admin.email, admin.password)).status_code == 401
    # Someone who finds the link later (mail archive, proxy log) can't use it again.
    replay = await client.post(
        "/auth/password/reset", json={"token": token, "password": "attackers password"}
    )
    assert replay.status_code == 410
    assert (await _login(client, admin.email, "attackers password")).status_code == 401


async def test_an_older_reset_link_dies_when_a_newer_one_is_used(client):
    admin = await register_tenant(client)
    older = await _reset_token(client, admin.email)
    newer = await _reset_token(client, admin.email)
    assert (
        await client.post("/auth/password/reset", json={"token": newer, "password": "new one!!"})
    ).status_code == 204
    assert (
        await client.post("/auth/password/reset", json={"token": older, "password": "other one"})
    ).status_code == 410


async def test_expired_reset_link_is_refused(client, settings):
    admin = await register_tenant(client)
    expired = email_tokens.password_reset_token(
        settings.model_copy(update={"password_reset_ttl_seconds": -60}),
        admin.user_id,
        "any hash",
    )
    response = await client.post(
        "/auth/password/reset", json={"token": expired, "password": "long enough"}
    )
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


async def test_a_sign_up_token_is_not_a_reset_token(client):
    email = unique_email()
    sign_up = await start_sign_up(client, email)
    response = await client.post(
        "/auth/password/reset", json={"token": sign_up, "password": "long enough"}
    )
    assert response.status_code == 401


async def test_reset_ends_the_sessions_from_before_in_every_tenant(client):
    home = await register_tenant(client)
    other = await register_tenant(client)
    invitation = await invite(client, other, "COACH", email=home.email)
    joined = await client.post(
        "/auth/invitations/accept", headers=home.headers, json={"token": invitation["token"]}
    )
    assert joined.status_code == 201
    # A thief holds refresh tokens of both tenants; the owner resets the password.
    token = await _reset_token(client, home.email)
    assert (
        await client.post("/auth/password/reset", json={"token": token, "password": "new one!!"})
    ).status_code == 204
    for stolen in (home.refresh_token, joined.json()["refresh_token"]):
        response = await client.post("/auth/refresh", json={"refresh_token": stolen})
        assert response.status_code == 401
    # And the owner signs in again with the new password.
    assert (await _login(client, home.email, "new one!!")).status_code == 200


async def test_mails_to_one_address_are_capped_and_the_answer_stays_the_same(client, settings):
    email = unique_email("flooded")
    answers = set()
    for _ in range(settings.auth_mails_per_address_per_hour + 3):
        response = await client.post(
            "/auth/register", json={"email": email, "name": "X", "tenant_name": "T"}
        )
        answers.add((response.status_code, response.text))
    assert len(answers) == 1
    await next_mail(email, SIGN_UP_SUBJECT)
    assert len(mails_to(email)) == settings.auth_mails_per_address_per_hour


async def test_the_mailed_link_is_whole_in_the_raw_mail(client):
    """Links are sent 8bit, not quoted-printable: a developer copying one from a mail
    catcher's log (README's Kubernetes walkthrough) gets the token whole."""
    email = unique_email()
    token = await start_sign_up(client, email)
    raw = mails_to(email)[-1].as_bytes().decode()
    assert "Content-Transfer-Encoding: 8bit" in raw
    assert f"token={quote(token)}" in raw
