import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from app.auth.security import PASSWORD_HASHER
from app.infra.db import TENANT_CONTEXT_SQL
from tests.factories import mail_body, next_mail, register_tenant, unique_email

PROBLEM = "application/problem+json"


def _identity(account):
    """sub, tenant and sid (the sign-in's session) of a real account, for hand-made tokens."""
    sid = jwt.decode(account.access_token, options={"verify_signature": False})["sid"]
    return {"sub": str(account.user_id), "tenant": str(account.tenant_id), "sid": sid}


def _claims(settings, **overrides):
    now = datetime.now(UTC)
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(uuid.uuid4()),
        "tenant": str(uuid.uuid4()),
        "role": "ADMIN",
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    claims.update(overrides)
    return claims


async def test_register_creates_tenant_admin_and_tokens(client, settings):
    admin = await register_tenant(client, "Riverside Tennis")
    assert admin.role == "ADMIN"
    payload = jwt.decode(
        admin.access_token,
        settings.jwt_access_secret.get_secret_value(),
        algorithms=["HS256"],
        audience=settings.jwt_audience,
    )
    assert {payload["sub"], payload["tenant"], payload["role"]} == {
        str(admin.user_id),
        str(admin.tenant_id),
        "ADMIN",
    }
    assert payload["iss"] == settings.jwt_issuer and payload["exp"] > payload["iat"]
    tenant = (await client.get(f"/tenants/{admin.tenant_id}", headers=admin.headers)).json()
    assert tenant["name"] == "Riverside Tennis"


async def test_passwords_are_stored_as_argon2id_with_owasp_parameters(client, superuser_conn):
    admin = await register_tenant(client)
    stored = await superuser_conn.fetchval(
        "SELECT password_hash FROM users WHERE id = $1", admin.user_id
    )
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert admin.password not in stored
    assert PASSWORD_HASHER.verify(stored, admin.password)


async def test_register_with_a_taken_email_answers_like_a_new_one_and_mails_the_owner(client):
    admin = await register_tenant(client)
    new_email = unique_email()
    taken = await client.post(
        "/auth/register",
        json={"email": admin.email.upper(), "name": "X", "tenant_name": "Other"},
    )
    fresh = await client.post(
        "/auth/register", json={"email": new_email, "name": "X", "tenant_name": "Other"}
    )
    assert taken.status_code == fresh.status_code == 202
    assert taken.json() == fresh.json()
    assert taken.headers["content-type"] == fresh.headers["content-type"]
    # The owner learns it by mail, with no sign-up link to follow.
    notice = await next_mail(admin.email, "already have a Courtside account")
    assert "token=" not in mail_body(notice)


async def test_login_returns_tokens_for_the_right_tenant_and_role(client):
    admin = await register_tenant(client)
    response = await client.post(
        "/auth/login", json={"email": admin.email, "password": admin.password}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["tenant_id"] == str(admin.tenant_id) and body["role"] == "ADMIN"


@pytest.mark.parametrize("password", ["wrong password", ""])
async def test_login_with_bad_credentials_is_401_or_422(client, password):
    admin = await register_tenant(client)
    response = await client.post("/auth/login", json={"email": admin.email, "password": password})
    assert response.status_code == (422 if password == "" else 401)
    assert response.headers["content-type"] == PROBLEM


async def test_unknown_email_and_wrong_password_look_the_same(client):
    admin = await register_tenant(client)
    wrong = await client.post("/auth/login", json={"email": admin.email, "password": "nope-nope"})
    unknown = await client.post(
        "/auth/login", json={"email": unique_email(), "password": "nope-nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]


async def test_login_to_a_tenant_the_user_is_not_in_fails(client):
    admin = await register_tenant(client)
    other = await register_tenant(client)
    response = await client.post(
        "/auth/login",
        json={"email": admin.email, "password": admin.password, "tenant_id": str(other.tenant_id)},
    )
    assert response.status_code == 401


async def test_refresh_rotates_and_the_old_token_stops_working(client):
    admin = await register_tenant(client)
    first = await client.post("/auth/refresh", json={"refresh_token": admin.refresh_token})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != admin.refresh_token
    me = await client.get(
        f"/tenants/{admin.tenant_id}",
        headers={"Authorization": f"Bearer {rotated['access_token']}"},
    )
    assert me.status_code == 200
    second = await client.post("/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert second.status_code == 200


async def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(client):
    admin = await register_tenant(client)
    rotated = (
        await client.post("/auth/refresh", json={"refresh_token": admin.refresh_token})
    ).json()
    # An attacker replays the stolen, already-rotated token…
    replay = await client.post("/auth/refresh", json={"refresh_token": admin.refresh_token})
    assert replay.status_code == 401
    # …and the legitimate client's current token is revoked with it.
    legit = await client.post("/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert legit.status_code == 401
    fresh = (
        await client.post("/auth/login", json={"email": admin.email, "password": admin.password})
    ).json()
    audit = await client.get(
        "/admin/audit",
        headers={"Authorization": f"Bearer {fresh['access_token']}"},
        params={"action": "auth.refresh_token_reuse"},
    )
    assert len(audit.json()["items"]) == 1


async def test_reuse_does_not_revoke_other_sessions(client):
    admin = await register_tenant(client)
    other_session = (
        await client.post("/auth/login", json={"email": admin.email, "password": admin.password})
    ).json()
    await client.post("/auth/refresh", json={"refresh_token": admin.refresh_token})
    await client.post("/auth/refresh", json={"refresh_token": admin.refresh_token})  # reuse
    still_ok = await client.post(
        "/auth/refresh", json={"refresh_token": other_session["refresh_token"]}
    )
    assert still_ok.status_code == 200


async def test_logout_revokes_the_refresh_token(client):
    admin = await register_tenant(client)
    assert (
        await client.post("/auth/logout", json={"refresh_token": admin.refresh_token})
    ).status_code == 204
    response = await client.post("/auth/refresh", json={"refresh_token": admin.refresh_token})
    assert response.status_code == 401


async def test_a_refresh_that_raced_a_logout_cannot_keep_the_session(client, runtime_conn):
    """A logout racing a refresh revokes the family's rows it can see, not the row the refresh
    is inserting. The token that refresh handed out must not outlive the logout."""
    admin = await register_tenant(client)
    rotated = (
        await client.post("/auth/refresh", json={"refresh_token": admin.refresh_token})
    ).json()
    sid = jwt.decode(rotated["access_token"], options={"verify_signature": False})["sid"]
    # The state such a race leaves: every row of the family revoked but the newest.
    async with runtime_conn.transaction():
        await runtime_conn.execute(TENANT_CONTEXT_SQL, str(admin.tenant_id), "")
        revoked = await runtime_conn.execute(
            "UPDATE refresh_tokens SET revoked_at = now() "
            "WHERE family_id = $1 AND used_at IS NOT NULL",
            uuid.UUID(sid),
        )
    assert revoked == "UPDATE 1"
    response = await client.post("/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token.at-all-but-long-enough-to-parse-xxxxxxxxxxxxxxxx",
        uuid.uuid4().hex + "." + "x" * 43,
    ],
)
async def test_forged_refresh_tokens_are_rejected(client, token):
    response = await client.post("/auth/refresh", json={"refresh_token": token})
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM


async def test_refresh_token_with_a_forged_tenant_prefix_is_rejected(client):
    admin = await register_tenant(client)
    other = await register_tenant(client)
    forged = other.tenant_id.hex + "." + admin.refresh_token.split(".", 1)[1]
    assert (await client.post("/auth/refresh", json={"refresh_token": forged})).status_code == 401


async def _get_with_token(client, admin, token):
    return await client.get(
        f"/tenants/{admin.tenant_id}", headers={"Authorization": f"Bearer {token}"}
    )


async def test_access_token_with_alg_none_is_rejected(client, settings):
    admin = await register_tenant(client)
    claims = _claims(settings, **_identity(admin))
    token = jwt.encode(claims, key=None, algorithm="none")
    response = await _get_with_token(client, admin, token)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM


async def test_access_token_signed_with_another_key_is_rejected(client, settings):
    admin = await register_tenant(client)
    claims = _claims(settings, **_identity(admin))
    token = jwt.encode(claims, "some-other-secret-of-sufficient-length-123", algorithm="HS256")
    assert (await _get_with_token(client, admin, token)).status_code == 401


async def test_access_token_for_another_audience_is_rejected(client, settings):
    admin = await register_tenant(client)
    claims = _claims(settings, **_identity(admin), aud="some-other-api")
    token = jwt.encode(claims, settings.jwt_access_secret.get_secret_value(), algorithm="HS256")
    assert (await _get_with_token(client, admin, token)).status_code == 401


async def test_expired_access_token_is_rejected(client, settings):
    admin = await register_tenant(client)
    past = datetime.now(UTC) - timedelta(minutes=10)
    claims = _claims(
        settings,
        **_identity(admin),
        iat=past - timedelta(minutes=15),
        exp=past,
    )
    token = jwt.encode(claims, settings.jwt_access_secret.get_secret_value(), algorithm="HS256")
    assert (await _get_with_token(client, admin, token)).status_code == 401


async def test_well_formed_token_is_accepted(client, settings):
    """The control for the rejections above: the same construction, correctly signed."""
    admin = await register_tenant(client)
    claims = _claims(settings, **_identity(admin))
    token = jwt.encode(claims, settings.jwt_access_secret.get_secret_value(), algorithm="HS256")
    assert (await _get_with_token(client, admin, token)).status_code == 200


async def test_missing_token_is_401(client):
    admin_tenant = uuid.uuid4()
    response = await client.get(f"/tenants/{admin_tenant}")
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "name": "A", "tenant_name": "T"},
        {"email": "a@example.com", "name": "A"},
        {"email": "a@example.com", "name": "A", "tenant_name": "T", "tenant_slug": "Not A Slug"},
        {
            "email": "a@example.com",
            "name": "A",
            "tenant_name": "T",
            "role": "ADMIN",
            "tenant_id": str(uuid.uuid4()),
        },
    ],
)
async def test_malformed_registration_is_422_problem_json(client, body):
    response = await client.post("/auth/register", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 422 and problem["errors"]


async def test_body_that_is_not_json_is_422(client):
    response = await client.post(
        "/auth/login", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


async def test_failed_logins_are_throttled_per_account(client, settings):
    admin = await register_tenant(client)
    for _ in range(settings.login_max_failures_per_account_ip):
        r = await client.post("/auth/login", json={"email": admin.email, "password": "bad-guess"})
        assert r.status_code == 401
    blocked = await client.post(
        "/auth/login", json={"email": admin.email, "password": admin.password}
    )
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert blocked.headers["content-type"] == PROBLEM


async def test_throttle_from_one_ip_does_not_lock_the_owner_out_elsewhere(app, client, settings):
    import httpx

    admin = await register_tenant(client)
    for _ in range(settings.login_max_failures_per_account_ip):
        await client.post("/auth/login", json={"email": admin.email, "password": "bad-guess"})
    owner_transport = httpx.ASGITransport(app=app, client=("192.0.2.77", 5555))
    async with httpx.AsyncClient(transport=owner_transport, base_url="http://t") as owner:
        response = await owner.post(
            "/auth/login", json={"email": admin.email, "password": admin.password}
        )
    assert response.status_code == 200


async def test_failed_login_of_a_known_account_writes_nothing_an_unknown_one_would_not(
    client, superuser_conn
):
    """Known and unknown addresses do the same work on a failed login: no audit row (that
    write, and its time, used to happen for known accounts only)."""
    admin = await register_tenant(client)

    async def audit_rows() -> int:
        return await superuser_conn.fetchval(
            "SELECT count(*) FROM audit_logs WHERE tenant_id = $1", admin.tenant_id
        )

    before = await audit_rows()
    known = await client.post(
        "/auth/login", json={"email": admin.email, "password": "wrong-password"}
    )
    unknown = await client.post(
        "/auth/login", json={"email": unique_email(), "password": "wrong-password"}
    )
    assert known.status_code == unknown.status_code == 401
    assert known.json() == unknown.json()
    assert await audit_rows() == before
