"""Plain async reconcile functions: a TenantSpec in, the platform made to match, a status
out. kopf handlers (handlers.py) and `courtside tenants apply` (cli.py) both call these.

The tenant's row, its first ADMIN's invitation and its usage go through the app's
provisioning service (app/tenants/provisioning.py), in the tenant's transaction; the
database role, its pin and the Secret are the operator's own (DDL as the owner role).

Each step first reads the live state and acts only on a difference, so applying the same
manifest again does nothing, and an operator restart repeats no work. Every failure ends
in status (all condition types present, Ready=False with a reason), never only in a log.
"""

import asyncio
import hashlib
import secrets as token_source
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from app.infra import aws
from app.infra.db import Database, asyncpg_dsn
from app.infra.settings import Settings
from app.tenants import provisioning
from app.tenants.provisioning import AdminInvitationState, SlugClaimed, tenant_id_for_slug
from courtside_operator.scram import scram_sha256_verifier
from courtside_operator.secrets import SecretConflict, SecretStore
from courtside_operator.spec import TenantSpec

log = structlog.get_logger(__name__)
APPLICATION_NAME = "courtside-operator"
ADMIN_INVITED = "AdminInvited"
# Keys older operators wrote into the tenant's Secret: `admin-invitation-token` held the
# first ADMIN's one-time token, so whoever could read the Secret could take the account.
RETIRED_SECRET_KEYS = ("admin-invitation-token",)
# Failures that say nothing about the request, only that the database was out of reach.
DB_UNREACHABLE = (
    OSError,
    TimeoutError,
    sa_exc.TimeoutError,  # no pooled connection came free in time
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)
MAX_MESSAGE = 1000


class Refused(Exception):
    """Something the operator will not take over (a slug, role or Secret that isn't this
    Tenant's): reported in status as `reason`, changed nowhere, looked at again by the
    resync (not retried sooner: someone has to resolve it)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class SecretUnavailable(Exception):
    """The tenant's Secret could not be read or written (the API server refused it or was
    out of reach); retried, and until then the tenant is not Ready."""


@dataclass(frozen=True)
class Failure:
    """Why a reconcile stopped: a condition's reason and message, and whether retrying soon
    can help (False: a conflict or constraint someone must resolve; the resync still looks
    again every OPERATOR_RESYNC_SECONDS)."""

    reason: str
    message: str
    retryable: bool


@dataclass
class Outcome:
    """What a reconcile did and found; `status` is the Tenant's .status to write."""

    actions: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # found but not repairable
    ok: bool = True
    # The AdminInvited condition, once this reconcile got that far.
    admin_invited: dict[str, Any] | None = None
    # Set when the reconcile stopped on an exception (see failure_of).
    failure: Failure | None = None
    # How far it got: the tenant's row (limits) and its role and Secret.
    row_applied: bool = False
    role_ready: bool = False

    @property
    def retryable(self) -> bool:
        """Whether the handler should retry with backoff (else: wait for the resync)."""
        if self.failure is not None:
            return self.failure.retryable
        return not self.problems  # drift only a superuser can undo waits for the resync


def failure_of(exc: BaseException) -> Failure:
    """Every exception a reconcile can meet, as a condition's reason and message."""
    if isinstance(exc, Refused):
        return Failure(exc.reason, exc.message, retryable=False)
    if isinstance(exc, SlugClaimed):
        return Failure("SlugClaimed", exc.detail, retryable=False)
    if isinstance(exc, SecretConflict):
        return Failure("SecretConflict", str(exc), retryable=False)
    if isinstance(exc, SecretUnavailable):
        # The store's own reason when it has one (KubernetesApiError), else ours.
        reason = getattr(exc.__cause__, "reason", None)
        return Failure(
            reason if isinstance(reason, str) and reason.isalnum() else "SecretUnavailable",
            _short(str(exc)),
            retryable=True,
        )
    if isinstance(exc, sa_exc.IntegrityError | asyncpg.IntegrityConstraintViolationError):
        return Failure(
            "DatabaseConflict",
            _short(f"the database refused a write: {_db_message(exc)}"),
            retryable=False,
        )
    if isinstance(exc, asyncpg.InsufficientPrivilegeError) or (
        isinstance(exc, sa_exc.DBAPIError)
        and isinstance(exc.orig, Exception)
        and "InsufficientPrivilege" in type(exc.orig).__name__
    ):
        return Failure(
            "DatabasePermissionDenied",
            _short(f"the owner role may not do this: {_db_message(exc)}"),
            retryable=False,
        )
    if isinstance(exc, DB_UNREACHABLE) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    ):
        return Failure("DatabaseUnreachable", _short(f"Database unreachable: {exc}"), True)
    if isinstance(exc, asyncpg.PostgresError | sa_exc.SQLAlchemyError):
        return Failure("DatabaseError", _short(_db_message(exc)), retryable=True)
    return Failure("ReconcileFailed", _short(f"unexpected {type(exc).__name__}: {exc}"), True)


def _db_message(exc: BaseException) -> str:
    # SQLAlchemy's own text adds the statement and its parameters: the driver's is enough.
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    return f"{type(orig).__name__}: {orig}"


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def condition(
    type_: str,
    ok: bool | None,
    reason: str,
    message: str,
    previous: list[dict[str, Any]] | None,
    generation: int | None,
) -> dict[str, Any]:
    """A metav1.Condition (ok None: Unknown); lastTransitionTime moves only when the status
    flips."""
    status = "Unknown" if ok is None else "True" if ok else "False"
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


def first_resync_delay(uid: str, interval: float) -> float:
    """When a Tenant's drift check first runs: one interval, plus a share of another taken
    from its uid, so Tenants seen together (all of them, at start-up) are spread over the
    interval instead of all checked in the same second, every interval after."""
    share = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:4]) / 2**32
    return interval * (1 + share)


def _claimant(owner: dict[str, Any] | None) -> uuid.UUID | None:
    """The Tenant object's metadata.uid (None: a local apply, which claims nothing)."""
    return uuid.UUID(str(owner["uid"])) if owner and owner.get("uid") else None


class TenantReconciler:
    """Reconciles Tenants as the owner role (CREATEROLE, ADMIN OPTION on the tenant reader
    group; on the runtime role only to take earlier tenant roles out of it).

    Built once per process (kopf's memo): at most OPERATOR_MAX_CONCURRENT_RECONCILES
    reconciles and deletions run at once, over at most OPERATOR_DB_MAX_CONNECTIONS owner
    connections, half in the tenants domain's pool, half in the role DDL's."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.max_connections = settings.operator_db_max_connections
        self._domain_pool_size = self.max_connections // 2
        self._ddl_pool_size = self.max_connections - self._domain_pool_size
        self.db = Database(
            settings.migration_database_url,
            pool_size=self._domain_pool_size,
            max_overflow=0,
            application_name=APPLICATION_NAME,
        )
        self._slots = asyncio.Semaphore(settings.operator_max_concurrent_reconciles)
        self._ddl_pool: asyncpg.Pool | None = None
        self._ddl_pool_lock = asyncio.Lock()

    async def close(self) -> None:
        if self._ddl_pool is not None:
            await self._ddl_pool.close()
        await self.db.dispose()

    @asynccontextmanager
    async def _owner_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection as the owner role from the one bounded pool for role DDL (opened
        on first use; no connection is kept while nothing runs for a minute)."""
        async with self._ddl_pool_lock:
            if self._ddl_pool is None:
                self._ddl_pool = await asyncpg.create_pool(
                    asyncpg_dsn(self.settings.migration_database_url),
                    min_size=0,
                    max_size=self._ddl_pool_size,
                    max_inactive_connection_lifetime=60,
                    timeout=10,
                    server_settings={
                        "application_name": APPLICATION_NAME,
                        "statement_timeout": "15000",
                    },
                )
        async with self._ddl_pool.acquire(timeout=30) as conn:
            yield conn

    async def reconcile(
        self,
        spec: TenantSpec,
        store: SecretStore,
        *,
        owner: dict[str, Any] | None = None,
        generation: int | None = None,
        previous: list[dict[str, Any]] | None = None,
    ) -> Outcome:
        """Make the tenant row, role, limits and credentials match `spec`. `owner` is the
        Tenant object's ownerReference: the first object to claim a slug keeps it."""
        async with self._slots:
            return await self._reconcile(spec, store, owner, generation, previous)

    async def _reconcile(
        self,
        spec: TenantSpec,
        store: SecretStore,
        owner: dict[str, Any] | None,
        generation: int | None,
        previous: list[dict[str, Any]] | None,
    ) -> Outcome:
        outcome = Outcome()
        tenant_id = tenant_id_for_slug(spec.slug)
        claimant = _claimant(owner)
        try:
            # Before anything is read or written: another Tenant object's tenant is not ours
            # (its Secret has the same name), then a Secret we didn't write is a conflict.
            if claimant is not None:
                claim = await provisioning.tenant_claim(self.db, tenant_id)
                if claim is not None and claim.manifest_uid not in (None, claimant):
                    raise SlugClaimed(spec.slug, claim.manifest_uid)
            stored = await self._stored(spec, store, owner)
            await self._tenant_row(spec, tenant_id, claimant, outcome)
            await self._role(spec, tenant_id, stored, store, owner, outcome)
            outcome.admin_invited = await self._admin_invitation(
                spec, tenant_id, outcome, previous, generation
            )
            usage = await self._usage(tenant_id)
        except Exception as exc:
            failure = failure_of(exc)
            log.warning(
                "tenant_reconcile_failed",
                tenant=spec.slug,
                reason=failure.reason,
                error=failure.message,
                exc_info=failure.reason == "ReconcileFailed",
            )
            return _failed(outcome, spec, failure, previous, generation)
        drift = "; ".join(outcome.drift)
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
                    problems or _role_message(spec, drift),
                    previous,
                    generation,
                ),
                *_limits_conditions(spec, previous, generation),
                # Ready is about the platform's objects (row, role, Secret) only, not
                # AdminInvited: a mail the SMTP server refused changes nothing the tenant's
                # workloads use, is retried by the resync on its own, and a Ready that
                # waited on SMTP would hold up `kubectl wait` and the handler's backoff.
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
                outcome.admin_invited,
            ],
        }
        return outcome

    async def _stored(
        self, spec: TenantSpec, store: SecretStore, owner: dict[str, Any] | None
    ) -> dict[str, str] | None:
        try:
            return await store.get(spec.secret_name, owner)
        except SecretConflict:
            raise
        except Exception as exc:
            raise SecretUnavailable(f"reading Secret {spec.secret_name}: {exc}") from exc

    async def _tenant_row(
        self,
        spec: TenantSpec,
        tenant_id: uuid.UUID,
        claimant: uuid.UUID | None,
        outcome: Outcome,
    ) -> None:
        wanted = provisioning.ManagedTenant(
            slug=spec.slug,
            name=spec.display_name,
            suspended=spec.suspended,
            rate_limits=spec.rate_limits.as_policy(),
            max_upload_bytes=spec.storage.max_upload_bytes,
            storage_quota_bytes=spec.storage.quota_bytes,
        )
        try:
            changes = await provisioning.ensure_tenant(
                self.db, tenant_id, wanted, claimant=claimant
            )
        except provisioning.SlugConflict as exc:
            raise Refused("SlugConflict", exc.detail) from exc
        outcome.row_applied = True
        if changes.created:
            outcome.actions.append("tenant row created")
        if changes.marked_managed:
            outcome.actions.append("tenant row marked managed")
        if changes.claimed and not changes.created:
            outcome.actions.append(f"tenant row claimed by Tenant {claimant}")
        if changes.updated:
            outcome.actions.append(f"tenant row updated: {', '.join(changes.updated)}")
            outcome.drift += [f"tenant.{key}" for key in changes.updated]

    async def _role(
        self,
        spec: TenantSpec,
        tenant_id: uuid.UUID,
        stored: dict[str, str] | None,
        store: SecretStore,
        owner: dict[str, Any] | None,
        outcome: Outcome,
    ) -> None:
        role, reader = spec.role_name, self.settings.db_tenant_reader_role
        password = (stored or {}).get("password") or token_source.token_urlsafe(24)
        login = "NOLOGIN" if spec.suspended else "LOGIN"
        limit = spec.database.connection_limit
        async with self._owner_connection() as conn, conn.transaction():
            mapped = await conn.fetchval(
                "SELECT tenant_id FROM tenant_db_roles WHERE role_name = $1 FOR UPDATE", role
            )
            live = await conn.fetchrow(LIVE_ROLE_SQL, role)
            if mapped is not None and mapped != tenant_id:
                raise Refused(
                    "RoleConflict",
                    f"role {role} belongs to another tenant ({mapped}); not taken over",
                )
            if mapped is None and live is not None:
                raise Refused(
                    "RoleConflict",
                    f"role {role} exists but the operator did not make it for this tenant; "
                    "not taken over",
                )
            await self._retire_old_role(conn, tenant_id, role, outcome)
            # DDL takes no parameters: format() quotes the identifier and literals. The
            # password goes as its SCRAM verifier: the plaintext is in no statement.
            if live is None:
                await _ddl(
                    conn,
                    "CREATE ROLE %I WITH " + login + " NOSUPERUSER NOBYPASSRLS NOCREATEDB "
                    "NOCREATEROLE NOREPLICATION CONNECTION LIMIT "
                    + str(int(limit))
                    + " PASSWORD %L",
                    role,
                    scram_sha256_verifier(password),
                )
                await _ddl(conn, "GRANT %I TO %I", reader, role)
                outcome.actions.append(f"role {role} created")
            else:
                await self._repair_role(conn, spec, live, login, outcome)
                if not (stored or {}).get("password"):
                    await _ddl(
                        conn,
                        "ALTER ROLE %I WITH PASSWORD %L",
                        role,
                        scram_sha256_verifier(password),
                    )
                    outcome.actions.append(f"role {role} password set")
            wanted_setting = f"app.tenant_id={tenant_id}"
            if live is None or wanted_setting not in (live["settings"] or ""):
                await _ddl(conn, "ALTER ROLE %I SET app.tenant_id = %L", role, str(tenant_id))
                if live is not None:
                    outcome.drift.append("app.tenant_id setting")
                    outcome.actions.append(f"role {role} app.tenant_id restored")
            if mapped is None:
                await conn.execute(
                    "INSERT INTO tenant_db_roles (role_name, tenant_id) VALUES ($1, $2)",
                    role,
                    tenant_id,
                )
            for group in self._platform_roles():
                # Also through a group (someone made the reader group a member of one).
                if await conn.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", role, group):
                    outcome.problems.append(f"role {role} is a member of {group}")
        kept = {k: v for k, v in (stored or {}).items() if k not in RETIRED_SECRET_KEYS}
        wanted = {**kept, "username": role, "password": password}
        if stored != wanted:
            try:
                await store.put(spec.secret_name, wanted, owner)
            except SecretConflict:
                raise
            except Exception as exc:
                # The role's password is set and the Secret doesn't have it: the next run
                # finds no Secret, sets a new password and writes it.
                raise SecretUnavailable(f"writing Secret {spec.secret_name}: {exc}") from exc
            if kept != wanted:
                outcome.actions.append(f"secret {spec.secret_name} written")
            retired = [k for k in RETIRED_SECRET_KEYS if k in (stored or {})]
            if retired:
                outcome.actions.append(
                    f"secret {spec.secret_name}: {', '.join(retired)} removed "
                    "(invitations are only mailed)"
                )
        outcome.role_ready = True

    def _platform_roles(self) -> list[str]:
        """Roles no tenant role may reach: owner, runtime, relay."""
        owner = make_url(self.settings.migration_database_url).username
        return [
            name
            for name in (owner, self.settings.db_runtime_role, self.settings.db_relay_role)
            if name
        ]

    async def _repair_role(
        self,
        conn: asyncpg.Connection,
        spec: TenantSpec,
        live: asyncpg.Record,
        login: str,
        outcome: Outcome,
    ) -> None:
        """Put an existing tenant role back: attributes, groups, no grants of its own."""
        role, reader = spec.role_name, self.settings.db_tenant_reader_role
        limit = spec.database.connection_limit
        repairs = []
        if live["rolcanlogin"] != (not spec.suspended):
            repairs.append(login)
        if live["rolconnlimit"] != limit:
            repairs.append(f"CONNECTION LIMIT {int(limit)}")
        # Attributes a tenant role never has. The owner (CREATEROLE, ADMIN on the roles it
        # made) can take back CREATEROLE; SUPERUSER, BYPASSRLS, REPLICATION and CREATEDB
        # need a superuser (or CREATEDB itself): each is tried alone, and what stays is
        # reported rather than hidden.
        kept = []
        for attribute, column in PRIVILEGED_ATTRIBUTES:
            if not live[column]:
                continue
            try:
                async with conn.transaction():
                    await _ddl(conn, f"ALTER ROLE %I WITH NO{attribute}", role)
            except asyncpg.InsufficientPrivilegeError:
                kept.append(attribute)
                continue
            outcome.actions.append(f"role {role} altered: NO{attribute}")
            outcome.drift.append(f"role attributes (NO{attribute})")
        if kept:
            outcome.problems.append(
                f"role {role} was given {' and '.join(kept)} by a superuser; the operator "
                "cannot revoke it"
            )
        if repairs:
            await _ddl(conn, "ALTER ROLE %I WITH " + " ".join(repairs), role)
            outcome.actions.append(f"role {role} altered: {' '.join(repairs)}")
            outcome.drift.append(f"role attributes ({' '.join(repairs)})")
        # Its privileges are the reader group's and nothing else: any other group (the
        # runtime role, as tenant roles were made before the reader group) is left.
        # (A REVOKE of a grant someone else made only warns: the re-read below tells.)
        others = [group for group in live["member_of"] if group != reader]
        for group in others:
            await _revoke(conn, "REVOKE %I FROM %I", group, role)
        if reader not in live["member_of"]:
            await _ddl(conn, "GRANT %I TO %I", reader, role)
            outcome.drift.append(f"membership in {reader}")
        for table in live["table_grants"]:
            await _revoke(conn, "REVOKE ALL ON TABLE %I FROM %I", table, role)
        after = await conn.fetchrow(LIVE_ROLE_SQL, role)
        for group in others:
            if group not in after["member_of"]:
                outcome.drift.append(f"membership in {group} revoked")
                outcome.actions.append(f"role {role} removed from {group}")
        for table in live["table_grants"]:
            if table not in after["table_grants"]:
                outcome.drift.append(f"privileges on {table} revoked")
        others = [g for g in after["member_of"] if g != reader]
        if others or after["table_grants"]:
            outcome.problems.append(
                f"role {role} keeps membership in {', '.join(others) or '-'} and privileges on "
                f"{', '.join(after['table_grants']) or '-'} that the operator cannot revoke"
            )

    async def _retire_old_role(
        self, conn: asyncpg.Connection, tenant_id: uuid.UUID, role: str, outcome: Outcome
    ) -> None:
        """A role this tenant had under an earlier naming scheme (a slug cut short, which
        another tenant may have shared) is dropped, then unmapped, in this transaction."""
        old = await conn.fetchval(
            "SELECT role_name FROM tenant_db_roles WHERE tenant_id = $1 AND role_name <> $2",
            tenant_id,
            role,
        )
        if old is None:
            return
        await _ddl(conn, "DROP ROLE IF EXISTS %I", old)
        await conn.execute("DELETE FROM tenant_db_roles WHERE role_name = $1", old)
        outcome.actions.append(f"role {old} replaced by {role}")

    async def _admin_invitation(
        self,
        spec: TenantSpec,
        tenant_id: uuid.UUID,
        outcome: Outcome,
        previous: list[dict[str, Any]] | None,
        generation: int | None,
    ) -> dict[str, Any]:
        """Invite `adminEmail` as the first ADMIN, by mail only: the one-time token goes to
        that address and nowhere else (the row keeps its HMAC). Returns AdminInvited.

        A mail the SMTP server did not take (or that nothing records as sent, such as an
        invitation an older operator put in the Secret) is sent again with a new token and
        expiry, so a token that may have been seen elsewhere stops working; so is an expired
        one. An open invitation whose mail went out is left alone."""
        email = spec.admin_email.lower()

        def invited(ok: bool, reason: str, message: str) -> dict[str, Any]:
            return condition(ADMIN_INVITED, ok, reason, message, previous, generation)

        invitation = await provisioning.invite_first_admin(
            self.db, tenant_id, email, last_mail_sent=_mailed(previous), settings=self.settings
        )
        if invitation.state == AdminInvitationState.MEMBER:
            return invited(True, "AdminIsMember", f"{email} is a member")
        assert invitation.expires_at is not None  # every state but MEMBER has one
        if invitation.state == AdminInvitationState.OPEN:
            return invited(True, "InvitationSent", _sent_message(email, invitation.expires_at))
        if invitation.state == AdminInvitationState.CREATED:
            outcome.actions.append(f"admin {email} invited")
        else:
            expired = " (expired)" if invitation.was_expired else ""
            outcome.actions.append(f"admin {email} invitation renewed{expired}")
        if not invitation.email_sent:
            return invited(
                False,
                "MailNotSent",
                f"the SMTP server did not take the invitation mail to {email}; it is sent "
                "again, with a new token, on the next reconcile (the operator resyncs every "
                f"{self.settings.operator_resync_seconds:g} s)",
            )
        outcome.actions.append(f"invitation mailed to {email}")
        return invited(True, "InvitationSent", _sent_message(email, invitation.expires_at))

    async def _usage(self, tenant_id: uuid.UUID) -> dict[str, int]:
        """status.usage: members, the storage totals the API keeps exact (used: objects in
        S3; reserved: uploads under way) and the limits in effect (the spec's, or the
        platform's defaults when it sets none)."""
        usage = await provisioning.usage(self.db, tenant_id, self.settings)
        return {
            "members": usage.members,
            "storageUsedBytes": usage.storage_used_bytes,
            "storageReservedBytes": usage.storage_reserved_bytes,
            "storageQuotaBytes": usage.storage_quota_bytes,
            "maxUploadBytes": usage.max_upload_bytes,
        }

    async def finalize(
        self, spec: TenantSpec, store: SecretStore, owner: dict[str, Any] | None = None
    ) -> list[str]:
        """Deletion: `Retain` disables the role, suspends the tenant and releases this
        Tenant object's claim on it, keeping its data; `Delete` purges the tenant's rows and
        S3 objects and drops the role. A Tenant object (`owner`) that does not hold the
        tenant's claim (a second claimant of the slug) removes nothing but its own Secret."""
        async with self._slots:
            return await self._finalize(spec, store, owner)

    async def _finalize(
        self, spec: TenantSpec, store: SecretStore, owner: dict[str, Any] | None
    ) -> list[str]:
        tenant_id = tenant_id_for_slug(spec.slug)
        claimant = _claimant(owner)
        if claimant is not None:
            claim = await provisioning.tenant_claim(self.db, tenant_id)
            if claim is not None and claim.manifest_uid != claimant:
                holder = f"Tenant {claim.manifest_uid}" if claim.manifest_uid else "no Tenant"
                return [
                    f"tenant {spec.slug} is managed by {holder}, not this one: its rows, "
                    "objects and role are left alone"
                ]
        actions: list[str] = []
        async with self._owner_connection() as conn:
            # The role mapped to this tenant, whatever it is called; never another's.
            role = await conn.fetchval(
                "SELECT m.role_name FROM tenant_db_roles m JOIN pg_roles r "
                "ON r.rolname = m.role_name WHERE m.tenant_id = $1",
                tenant_id,
            )
            if spec.deletion_policy == "Retain":
                if role is not None:
                    await _ddl(conn, "ALTER ROLE %I WITH NOLOGIN", role)
                    actions.append(f"role {role} disabled")
                if await provisioning.suspend_tenant(self.db, tenant_id, claimant=claimant):
                    actions.append("tenant suspended (data retained)")
                return actions
            actions.append(f"{await self._purge_objects(tenant_id)} S3 objects deleted")
            # Every tenant table cascades from the tenant's row.
            if await provisioning.delete_tenant(self.db, tenant_id, claimant=claimant):
                actions.append("tenant rows purged")
            if role is not None:
                # Ends its sessions first: a role with live connections can't be dropped.
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                    role,
                )
            # Dropped before it is unmapped: a live tenant role is never without its pin.
            async with conn.transaction():
                if role is not None:
                    await _ddl(conn, "DROP ROLE IF EXISTS %I", role)
                    actions.append(f"role {role} dropped")
                await conn.execute("DELETE FROM tenant_db_roles WHERE tenant_id = $1", tenant_id)
        try:
            await store.delete(spec.secret_name, owner)
        except SecretConflict as exc:
            actions.append(str(exc))
        return actions

    async def _purge_objects(self, tenant_id: uuid.UUID) -> int:
        deleted = 0
        async with aws.client(self.settings, "s3") as s3:
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


def _mailed(previous: list[dict[str, Any]] | None) -> bool:
    """Whether the last reconcile recorded the invitation mail as taken by SMTP."""
    before = next((c for c in previous or [] if c.get("type") == ADMIN_INVITED), None)
    return before is not None and (before.get("status"), before.get("reason")) == (
        "True",
        "InvitationSent",
    )


def _sent_message(email: str, expires_at: datetime) -> str:
    return f"invitation mailed to {email}; it expires at {expires_at:%Y-%m-%dT%H:%M:%SZ}"


def _role_message(spec: TenantSpec, drift: str) -> str:
    return f"role {spec.role_name} {'disabled (suspended)' if spec.suspended else 'can log in'}" + (
        f"; repaired drift: {drift}" if drift else ""
    )


def _limits_conditions(
    spec: TenantSpec,
    previous: list[dict[str, Any]] | None,
    generation: int | None,
    failure: Failure | None = None,
) -> list[dict[str, Any]]:
    """QuotasApplied and RateLimitsApplied: True once the tenant's row has them; given a
    failure before that, False (a refusal) or Unknown (the database was not reached)."""
    quotas = (
        f"maxUploadBytes={spec.storage.max_upload_bytes or 'default'}, "
        f"quotaBytes={spec.storage.quota_bytes or 'default'}"
    )
    limits = "custom limits" if spec.rate_limits.as_policy() else "platform defaults"
    if failure is None:
        return [
            condition("QuotasApplied", True, "Applied", quotas, previous, generation),
            condition("RateLimitsApplied", True, "Applied", limits, previous, generation),
        ]
    state = None if failure.retryable else False
    return [
        condition(
            type_,
            state,
            failure.reason,
            f"{wanted} not confirmed: {failure.message}",
            previous,
            generation,
        )
        for type_, wanted in (("QuotasApplied", quotas), ("RateLimitsApplied", limits))
    ]


def _failed(
    outcome: Outcome,
    spec: TenantSpec,
    failure: Failure,
    previous: list[dict[str, Any]] | None,
    generation: int | None,
) -> Outcome:
    """The status of a reconcile that stopped on `failure`: every condition type, each as
    far as this run got, and Ready=False with the failure's reason."""
    outcome.ok = False
    outcome.failure = failure
    reason, message = failure.reason, failure.message
    database = (
        condition("DatabaseReady", True, "RoleReady", _role_message(spec, ""), previous, generation)
        if outcome.role_ready
        else condition("DatabaseReady", False, reason, message, previous, generation)
    )
    # Kept as it was when this run didn't reach it: losing "mailed" would resend it.
    invited = (
        outcome.admin_invited
        or next((c for c in previous or [] if c.get("type") == ADMIN_INVITED), None)
        or condition(
            ADMIN_INVITED,
            None,
            reason,
            f"not invited yet: {message}",
            previous,
            generation,
        )
    )
    outcome.status = {
        "observedGeneration": generation,
        "conditions": [
            database,
            *_limits_conditions(
                spec, previous, generation, None if outcome.row_applied else failure
            ),
            condition("Ready", False, reason, message, previous, generation),
            invited,
        ],
    }
    if outcome.role_ready:
        outcome.status["secretName"] = spec.secret_name
    return outcome


# Role attributes a tenant role never has, and their pg_roles columns.
PRIVILEGED_ATTRIBUTES = (
    ("SUPERUSER", "rolsuper"),
    ("BYPASSRLS", "rolbypassrls"),
    ("REPLICATION", "rolreplication"),
    ("CREATEROLE", "rolcreaterole"),
    ("CREATEDB", "rolcreatedb"),
)

# A role as it is: attributes, settings, the groups it is a direct member of, and the tables
# it was granted anything on directly.
LIVE_ROLE_SQL = """
    SELECT r.rolcanlogin, r.rolconnlimit, r.rolsuper, r.rolbypassrls, r.rolreplication,
      r.rolcreaterole, r.rolcreatedb,
      (SELECT array_to_string(s.setconfig, ',') FROM pg_db_role_setting s
       WHERE s.setrole = r.oid AND s.setdatabase = 0) AS settings,
      ARRAY(SELECT DISTINCT g.rolname::text FROM pg_auth_members m
            JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid) AS member_of,
      ARRAY(SELECT DISTINCT c.relname::text FROM pg_class c, aclexplode(c.relacl) a
            WHERE a.grantee = r.oid AND c.relnamespace = 'public'::regnamespace) AS table_grants
    FROM pg_roles r WHERE r.rolname = $1
"""


async def _revoke(conn: asyncpg.Connection, template: str, *args: str) -> None:
    """A revocation the owner may lack the right to; the re-read afterwards reports it."""
    try:
        async with conn.transaction():
            await _ddl(conn, template, *args)
    except asyncpg.InsufficientPrivilegeError:
        log.warning("tenant_role_revoke_refused", statement=template, args=args)


async def _ddl(conn: asyncpg.Connection, template: str, *args: str) -> None:
    """Run DDL built by the server's format(): %I quotes identifiers, %L literals."""
    statement = await conn.fetchval(
        "SELECT format($1, " + ", ".join(f"${i + 2}::text" for i in range(len(args))) + ")",
        template,
        *args,
    )
    await conn.execute(statement)
