"""Secrets anyone can read in this repository never sign tokens outside development: the
settings refuse them at startup, and a token forged with them gets nowhere."""

import os
import secrets
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from pydantic import ValidationError

from app.infra.settings import Settings
from tests.factories import register_tenant

# What an attacker reads in the public repository (app/infra/settings.py, values-dev.yaml) and
# in .env.example.
PUBLIC_ACCESS_SECRET = "dev-access-secret-change-me-0123456789abcdef"
ENV_EXAMPLE_SECRET = "change-me-to-32-or-more-random-bytes"
OWN_DB_URL = "postgresql+asyncpg://courtside_app:{}@db.internal:5432/courtside"


def production(**overrides: object) -> Settings:
    """Production settings with real secrets and database passwords, then `overrides`."""
    values: dict[str, object] = {
        "environment": "production",
        "jwt_access_secret": secrets.token_urlsafe(48),
        "jwt_refresh_secret": secrets.token_urlsafe(48),
        "database_url": OWN_DB_URL.format(secrets.token_urlsafe(16)),
        "migration_database_url": OWN_DB_URL.format(secrets.token_urlsafe(16)),
        "relay_database_url": OWN_DB_URL.format(secrets.token_urlsafe(16)),
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def forged_admin_token(tenant_id: uuid.UUID, user_id: uuid.UUID, secret: str) -> str:
    now = datetime.now(UTC)
    claims = {
        "iss": "courtside",
        "aud": "courtside-api",
        "sub": str(user_id),
        "tenant": str(tenant_id),
        "role": "ADMIN",
        "iat": now,
        "exp": now + timedelta(minutes=10),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_admin_token_forged_with_the_public_default_secret_is_rejected(client):
    victim = await register_tenant(client)
    token = forged_admin_token(victim.tenant_id, victim.user_id, PUBLIC_ACCESS_SECRET)
    response = await client.get(
        f"/tenants/{victim.tenant_id}/members", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    # The control: the victim's own token reaches the same route.
    own = await client.get(f"/tenants/{victim.tenant_id}/members", headers=victim.headers)
    assert own.status_code == 200


def test_production_without_jwt_secrets_does_not_start(monkeypatch):
    monkeypatch.delenv("JWT_ACCESS_SECRET", raising=False)
    monkeypatch.delenv("JWT_REFRESH_SECRET", raising=False)
    with pytest.raises(ValidationError) as refused:
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            environment="production",
            database_url=OWN_DB_URL.format("s3cret-app"),
            migration_database_url=OWN_DB_URL.format("s3cret-owner"),
            relay_database_url=OWN_DB_URL.format("s3cret-relay"),
        )
    message = str(refused.value)
    assert "JWT_ACCESS_SECRET is not set" in message
    assert "JWT_REFRESH_SECRET is not set" in message


@pytest.mark.parametrize("environment", ["production", "test"])
@pytest.mark.parametrize(
    "secret, reason",
    [
        (PUBLIC_ACCESS_SECRET, "is not set"),
        (ENV_EXAMPLE_SECRET, "is a public placeholder"),
        ("x" * 31, "is shorter than 32 bytes"),
        ("", "is shorter than 32 bytes"),
    ],
    ids=["built-in-default", "env-example", "31-bytes", "empty"],
)
def test_public_or_short_jwt_secret_refuses_to_start(environment, secret, reason):
    with pytest.raises(ValidationError, match=f"JWT_ACCESS_SECRET {reason}"):
        production(environment=environment, jwt_access_secret=secret)


def test_refusal_never_echoes_the_secret():
    short = "hunter2-but-too-short"
    with pytest.raises(ValidationError) as refused:
        production(jwt_refresh_secret=short)
    assert "JWT_REFRESH_SECRET" in str(refused.value) and short not in str(refused.value)


@pytest.mark.parametrize(
    "setting, url",
    [
        ("database_url", "postgresql+asyncpg://courtside_app:courtside_app@db/courtside"),
        ("migration_database_url", "postgresql+asyncpg://o:courtside_owner@db/courtside"),
        ("relay_database_url", "postgresql+asyncpg://courtside_relay:courtside_relay@db/c"),
    ],
)
def test_production_refuses_the_well_known_database_passwords(setting, url):
    with pytest.raises(ValidationError, match=f"{setting.upper()} uses a well-known default"):
        production(**{setting: url})


def test_real_secrets_start_and_development_keeps_its_defaults(monkeypatch):
    """The controls: production with its own secrets starts; `make dev` needs none."""
    assert production().environment == "production"
    monkeypatch.delenv("JWT_ACCESS_SECRET", raising=False)
    development = Settings(_env_file=None, environment="development")  # type: ignore[call-arg]
    assert PUBLIC_ACCESS_SECRET == development.jwt_access_secret.get_secret_value()


@pytest.mark.parametrize(
    "command", [["api"], ["worker", "scheduler"], ["operator"]], ids=lambda c: c[0]
)
def test_every_entry_point_refuses_to_start_without_secrets(settings, command):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWT_")}
    env["ENVIRONMENT"] = "production"
    result = subprocess.run(
        [sys.executable, "-m", "courtside.cli", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "courtside: invalid settings" in result.stderr
    assert "JWT_ACCESS_SECRET is not set" in result.stderr
    assert "DATABASE_URL uses a well-known default password" in result.stderr
    assert "Traceback" not in result.stderr
