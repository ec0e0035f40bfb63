"""Database provisioning: roles, database, migrations.

`bootstrap` needs a superuser (or a role with CREATEROLE and CREATEDB) and is what the
local stack and the tests use; in production the platform team provisions the roles once
(the chart's dev values show how) and `courtside migrate` only runs migrations.
"""

from dataclasses import dataclass
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from app.infra.db import asyncpg_dsn
from app.infra.settings import Settings

ROOT = Path(__file__).resolve().parents[2]  # the repository (or install) root


@dataclass(frozen=True)
class RoleSpec:
    name: str
    password: str
    attributes: str


def _roles_from_settings(settings: Settings) -> tuple[RoleSpec, RoleSpec, RoleSpec, str]:
    owner = make_url(settings.migration_database_url)
    runtime = make_url(settings.database_url)
    relay = make_url(settings.relay_database_url)
    if runtime.username != settings.db_runtime_role or relay.username != settings.db_relay_role:
        raise ValueError(
            "DATABASE_URL/RELAY_DATABASE_URL users must match DB_RUNTIME_ROLE/DB_RELAY_ROLE"
        )
    return (
        RoleSpec(owner.username or "", owner.password or "", "LOGIN CREATEROLE NOSUPERUSER"),
        RoleSpec(
            runtime.username or "",
            runtime.password or "",
            "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE",
        ),
        RoleSpec(
            relay.username or "",
            relay.password or "",
            "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE",
        ),
        owner.database or "courtside",
    )


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def bootstrap(admin_url: str, settings: Settings) -> None:
    """Create the owner, runtime, relay and tenant-reader roles and the database, if missing
    (idempotent)."""
    owner, runtime, relay, database = _roles_from_settings(settings)
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        for role in (owner, runtime, relay):
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role.name)
            verb = "ALTER" if exists else "CREATE"
            # DDL takes no bind parameters; names and passwords are quoted above.
            await conn.execute(
                f"{verb} ROLE {_quote_ident(role.name)} WITH {role.attributes} "
                f"PASSWORD {_quote_literal(role.password)}"
            )
        # Per-tenant roles (the Tenant operator's, run as the owner) are members of this
        # NOLOGIN group only: it may SELECT tenant tables, pinned to the session's tenant.
        reader = _quote_ident(settings.db_tenant_reader_role)
        if not await conn.fetchval(
            "SELECT 1 FROM pg_roles WHERE rolname = $1", settings.db_tenant_reader_role
        ):
            await conn.execute(
                f"CREATE ROLE {reader} WITH NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
            )
        await conn.execute(f"GRANT {reader} TO {_quote_ident(owner.name)} WITH ADMIN OPTION")
        # Only to take tenant roles made before the reader group out of the runtime role.
        await conn.execute(
            f"GRANT {_quote_ident(runtime.name)} TO {_quote_ident(owner.name)} WITH ADMIN OPTION"
        )
        # The Tenant operator pins per-tenant roles with ALTER ROLE … SET app.tenant_id, which
        # a non-superuser may only do for a parameter it was granted (PostgreSQL 15+).
        await conn.execute(f"GRANT SET ON PARAMETER app.tenant_id TO {_quote_ident(owner.name)}")
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await conn.execute(
                f"CREATE DATABASE {_quote_ident(database)} OWNER {_quote_ident(owner.name)}"
            )
    finally:
        await conn.close()
    # PostgreSQL 15+ gives the public schema to the database owner; older servers need this.
    db_conn = await asyncpg.connect(
        asyncpg_dsn(
            make_url(admin_url).set(database=database).render_as_string(hide_password=False)
        )
    )
    try:
        await db_conn.execute(f"ALTER SCHEMA public OWNER TO {_quote_ident(owner.name)}")
    finally:
        await db_conn.close()


def alembic_config(url: str | None = None) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    if url:
        config.attributes["url"] = url
    return config


def migrate(settings: Settings, revision: str = "head") -> None:
    """Apply migrations as the owner role (alembic runs its own event loop)."""
    command.upgrade(alembic_config(settings.migration_database_url), revision)


async def drop_database(admin_url: str, database: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(database)} WITH (FORCE)")
    finally:
        await conn.close()
