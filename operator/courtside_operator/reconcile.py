"""Plain async reconcile functions: a TenantSpec in, the platform made to match, a status
out. kopf handlers (handlers.py) and `courtside tenants apply` (cli.py) both call these.

Each step first reads the live state and acts only on a difference, so applying the same
manifest again does nothing, and an operator restart repeats no work.
"""

import secrets as token_source
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from app import aws
from app.auth.models import User
from app.auth.security import OpaqueToken
from app.db import Database
from app.media.models import MediaAsset
from app.settings import Settings
from app.tenants.models import Invitation, Role, Tenant, TenantMembership
from app.tenants.service import tenant_id_for_slug
from courtside_operator.secrets import SecretStore
from courtside_operator.spec import TenantSpec

log = structlog.get_logger(__name__)
DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


@dataclass
class Outcome:
    """What a reconcile did and found; `status` is the Tenant's .status to write."""

    actions: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # found but not repairable
    ok: bool = True


def condition(
    type_: str,
    ok: bool,
    reason: str,
    message: str,
    previous: list[dict[str, Any]] | None,
    generation: int | None,
) -> dict[str, Any]:
    """A metav1.Condition; lastTransitionTime moves only when the status flips."""
    status = "True" if ok else "False"
    before = next((c for c in previous or [] if c.get("type") == type_), None)
    changed = before is None or before.get("status") != status
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": (
            before["lastTransitionTime"]
            if before and not changed
            else datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ),
        **({"observedGeneration": generation} if generation is not None else {}),
    }


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class TenantReconciler:
    """Reconciles Tenants as the owner role (CREATEROLE, ADMIN OPTION on the runtime role)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(
            settings.migration_database_url,
            pool_size=2,
            max_overflow=2,
            application_name="courtside-operator",
        )

    async def close(self) -> None:
        await self.db.dispose()

    async def reconcile(
        self,
        spec: TenantSpec,
        store: SecretStore,
        *,
        owner: dict[str, Any] | None = None,
        generation: int | None = None,
        previous: list[dict[str, Any]] | None = None,
    ) -> Outcome:
        """Make the tenant row, role, limits and credentials match `spec`."""
        outcome = Outcome()
        tenant_id = tenant_id_for_slug(spec.slug)
        try:
            await self._tenant_row(spec, tenant_id, outcome)
            password = await self._role(spec, tenant_id, store, owner, outcome)
            await self._admin_invitation(spec, tenant_id, store, owner, password, outcome)
            usage = await self._usage(tenant_id)
        except DB_ERRORS as exc:
            log.warning("tenant_reconcile_db_error", tenant=spec.slug, error=str(exc))
            message = f"Database unreachable: {exc}"
            outcome.ok = False
            outcome.status = {
                "observedGeneration": generation,
                "conditions": [
                    condition(
                        "DatabaseReady", False, "DatabaseUnreachable", message, previous, generation
                    ),
                    condition("Ready", False, "DatabaseUnreachable", message, previous, generation),
                ],
            }
            return outcome
        drift = "; ".join(outcome.drift)
        limits = spec.rate_limits.as_policy()
        outcome.ok = not outcome.problems
        problems = "; ".join(outcome.problems)
        outcome.status = {
            "observedGeneration": generation,
            "secretName": spec.secret_name,
            "usage": usage,
            "conditions": [
                condition(
                    "DatabaseReady",
                    outcome.ok,
                    "RoleReady" if outcome.ok else "DriftNotRepairable",
                    problems
                    or (
                        f"role {spec.role_name} "
                        f"{'disabled (suspended)' if spec.suspended else 'can log in'}"
                        + (f"; repaired drift: {drift}" if drift else "")
                    ),
                    previous,
                    generation,
                ),
                condition(
                    "QuotasApplied",
                    True,
                    "Applied",
                    f"maxUploadBytes={spec.storage.max_upload_bytes or 'default'}, "
                    f"quotaBytes={spec.storage.quota_bytes or 'default'}",
                    previous,
                    generation,
                ),
                condition(
                    "RateLimitsApplied",
                    True,
                    "Applied",
                    "custom limits" if limits else "platform defaults",
                    previous,
                    generation,
                ),
                condition(
                    "Ready",
                    outcome.ok,
                    ("Suspended" if spec.suspended else "Reconciled")
                    if outcome.ok
                    else "DriftNotRepairable",
                    problems
                    or ("tenant is suspended" if spec.suspended else "tenant matches its spec"),
                    previous,
                    generation,
                ),
            ],
        }
        return outcome

    async def _tenant_row(self, spec: TenantSpec, tenant_id: uuid.UUID, outcome: Outcome) -> None:
        wanted = {
            "name": spec.display_name,
            "suspended": spec.suspended,
            "rate_limits": spec.rate_limits.as_policy(),
            "max_upload_bytes": spec.storage.max_upload_bytes,
            "storage_quota_bytes": spec.storage.quota_bytes,
        }
        async with self.db.transaction(tenant_id) as session:
            tenant = await session.get(Tenant, tenant_id, with_for_update=True)
            if tenant is None:
                session.add(Tenant(id=tenant_id, slug=spec.slug, **wanted))
                outcome.actions.append("tenant row created")
                return
            changed = [key for key, value in wanted.items() if getattr(tenant, key) != value]
            for key in changed:
                setattr(tenant, key, wanted[key])
            if changed:
                outcome.actions.append(f"tenant row updated: {', '.join(changed)}")
                outcome.drift += [f"tenant.{key}" for key in changed]

    async def _role(
        self,
        spec: TenantSpec,
        tenant_id: uuid.UUID,
        store: SecretStore,
        owner: dict[str, Any] | None,
        outcome: Outcome,
    ) -> str:
        role, runtime = spec.role_name, self.settings.db_runtime_role
        stored = await store.get(spec.secret_name)
        password = (stored or {}).get("password") or token_source.token_urlsafe(24)
        login = "NOLOGIN" if spec.suspended else "LOGIN"
        limit = spec.database.connection_limit
        conn = await asyncpg.connect(_dsn(self.settings.migration_database_url), timeout=10)
        try:
            async with conn.transaction():
                live = await conn.fetchrow(
                    "SELECT r.rolcanlogin, r.rolconnlimit, r.rolsuper, r.rolbypassrls, "
                    "  pg_has_role(r.oid, $2, 'MEMBER') AS in_runtime, "
                    "  (SELECT array_to_string(s.setconfig, ',') FROM pg_db_role_setting s "
                    "   WHERE s.setrole = r.oid AND s.setdatabase = 0) AS settings "
                    "FROM pg_roles r WHERE r.rolname = $1",
                    role,
                    runtime,
                )
                # DDL takes no parameters: format() quotes the identifier and literals.
                if live is None:
                    await _ddl(
                        conn,
                        "CREATE ROLE %I WITH " + login + " NOSUPERUSER NOBYPASSRLS "
                        "NOCREATEDB NOCREATEROLE CONNECTION LIMIT "
                        + str(int(limit))
                        + " PASSWORD %L",
                        role,
                        password,
                    )
                    outcome.actions.append(f"role {role} created")
                else:
                    repairs = []
                    if live["rolcanlogin"] != (not spec.suspended):
                        repairs.append(login)
                    if live["rolconnlimit"] != limit:
                        repairs.append(f"CONNECTION LIMIT {int(limit)}")
                    privileged = [
                        attr
                        for attr, bad in (
                            ("NOSUPERUSER", live["rolsuper"]),
                            ("NOBYPASSRLS", live["rolbypassrls"]),
                        )
                        if bad
                    ]
                    if privileged:
                        # Only a superuser can take these back; say so rather than hide it.
                        try:
                            async with conn.transaction():
                                await _ddl(conn, "ALTER ROLE %I WITH " + " ".join(privileged), role)
                            outcome.drift.append(f"role attributes ({' '.join(privileged)})")
                        except asyncpg.InsufficientPrivilegeError:
                            outcome.problems.append(
                                f"role {role} was given {' and '.join(a[2:] for a in privileged)}"
                                " by a superuser; the operator cannot revoke it"
                            )
                    if repairs:
                        await _ddl(conn, "ALTER ROLE %I WITH " + " ".join(repairs), role)
                        outcome.actions.append(f"role {role} altered: {' '.join(repairs)}")
                        outcome.drift.append(f"role attributes ({' '.join(repairs)})")
                    if stored is None:
                        await _ddl(conn, "ALTER ROLE %I WITH PASSWORD %L", role, password)
                        outcome.actions.append(f"role {role} password set")
                if live is None or not live["in_runtime"]:
                    await _ddl(conn, "GRANT %I TO %I", runtime, role)
                    if live is not None:
                        outcome.drift.append("runtime privileges")
                wanted_setting = f"app.tenant_id={tenant_id}"
                if live is None or wanted_setting not in (live["settings"] or ""):
                    await _ddl(conn, "ALTER ROLE %I SET app.tenant_id = %L", role, str(tenant_id))
                    if live is not None:
                        outcome.drift.append("app.tenant_id setting")
                        outcome.actions.append(f"role {role} app.tenant_id restored")
                mapped = await conn.fetchval(
                    "SELECT tenant_id FROM tenant_db_roles WHERE role_name = $1", role
                )
                if mapped != tenant_id:
                    await conn.execute(
                        "INSERT INTO tenant_db_roles (role_name, tenant_id) VALUES ($1, $2) "
                        "ON CONFLICT (role_name) DO UPDATE SET tenant_id = excluded.tenant_id",
                        role,
                        tenant_id,
                    )
        finally:
            await conn.close()
        if stored is None or stored.get("username") != role:
            await store.put(
                spec.secret_name, {**(stored or {}), "username": role, "password": password}, owner
            )
            outcome.actions.append(f"secret {spec.secret_name} written")
        return password

    async def _admin_invitation(
        self,
        spec: TenantSpec,
        tenant_id: uuid.UUID,
        store: SecretStore,
        owner: dict[str, Any] | None,
        password: str,
        outcome: Outcome,
    ) -> None:
        """Invite the first ADMIN once; the one-time token goes into the tenant's Secret."""
        email = spec.admin_email.lower()
        async with self.db.transaction(tenant_id) as session:
            member = await session.scalar(
                select(TenantMembership.id)
                .join(User, User.id == TenantMembership.user_id)
                .where(User.email == email)
            )
            invited = await session.scalar(
                select(Invitation.id).where(
                    Invitation.email == email, Invitation.accepted_at.is_(None)
                )
            )
            if member is not None or invited is not None:
                return
            token = OpaqueToken.new(tenant_id)
            session.add(
                Invitation(
                    tenant_id=tenant_id,
                    email=email,
                    role=Role.ADMIN,
                    token_hash=token.digest(self.settings),
                    expires_at=datetime.now(UTC)
                    + timedelta(seconds=self.settings.invitation_ttl_seconds),
                )
            )
        stored = await store.get(spec.secret_name) or {}
        await store.put(
            spec.secret_name,
            {
                **stored,
                "username": spec.role_name,
                "password": password,
                "admin-invitation-token": token.value,
            },
            owner,
        )
        outcome.actions.append(f"admin {email} invited")

    async def _usage(self, tenant_id: uuid.UUID) -> dict[str, int]:
        async with self.db.transaction(tenant_id) as session:
            members = await session.scalar(select(func.count()).select_from(TenantMembership))
            storage = await session.scalar(
                select(func.coalesce(func.sum(MediaAsset.size_bytes), 0))
            )
        return {"members": int(members or 0), "storageBytes": int(storage or 0)}

    async def finalize(self, spec: TenantSpec, store: SecretStore) -> list[str]:
        """Deletion: `Retain` disables the role and suspends the tenant, keeping its data;
        `Delete` purges the tenant's rows and S3 objects and drops the role."""
        tenant_id = tenant_id_for_slug(spec.slug)
        role = spec.role_name
        actions: list[str] = []
        conn = await asyncpg.connect(_dsn(self.settings.migration_database_url), timeout=10)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            if spec.deletion_policy == "Retain":
                if exists:
                    await _ddl(conn, "ALTER ROLE %I WITH NOLOGIN", role)
                    actions.append(f"role {role} disabled")
                async with self.db.transaction(tenant_id) as session:
                    tenant = await session.get(Tenant, tenant_id)
                    if tenant is not None and not tenant.suspended:
                        tenant.suspended = True
                        actions.append("tenant suspended (data retained)")
                return actions
            actions.append(f"{await self._purge_objects(tenant_id)} S3 objects deleted")
            async with self.db.transaction(tenant_id) as session:
                tenant = await session.get(Tenant, tenant_id)
                if tenant is not None:
                    await session.delete(tenant)  # every tenant table cascades from it
                    actions.append("tenant rows purged")
            await conn.execute("DELETE FROM tenant_db_roles WHERE role_name = $1", role)
            if exists:
                # Ends its sessions first: a role with live connections can't be dropped.
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                    role,
                )
                await _ddl(conn, "DROP ROLE IF EXISTS %I", role)
                actions.append(f"role {role} dropped")
        finally:
            await conn.close()
        await store.delete(spec.secret_name)
        return actions

    async def _purge_objects(self, tenant_id: uuid.UUID) -> int:
        deleted = 0
        async with aws.session().client("s3", **aws.client_kwargs(self.settings)) as s3:
            paginator = s3.get_paginator("list_objects_v2")
            async for page in paginator.paginate(
                Bucket=self.settings.s3_bucket, Prefix=f"tenants/{tenant_id}/"
            ):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    await s3.delete_objects(
                        Bucket=self.settings.s3_bucket, Delete={"Objects": keys, "Quiet": True}
                    )
                    deleted += len(keys)
        return deleted


async def _ddl(conn: asyncpg.Connection, template: str, *args: str) -> None:
    """Run DDL built by the server's format(): %I quotes identifiers, %L literals."""
    statement = await conn.fetchval(
        "SELECT format($1, " + ", ".join(f"${i + 2}::text" for i in range(len(args))) + ")",
        template,
        *args,
    )
    await conn.execute(statement)
