"""Engine, sessions, and the one place a transaction gets its tenant.

Every transaction a session begins runs ``set_config('app.tenant_id', …, true)``
(transaction-local) from ``session.info``; RLS policies read that setting. A session
opened without a tenant sees no tenant rows.
"""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
from sqlalchemy import DateTime, MetaData, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session

from app.infra.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True)}


# Bound parameters only: the tenant never reaches SQL as text.
TENANT_CONTEXT_SQL = (
    "SELECT set_config('app.tenant_id', $1, true), set_config('app.user_id', $2, true)"
)
_TENANT_CONTEXT = text(
    "SELECT set_config('app.tenant_id', :tenant_id, true), "
    "set_config('app.user_id', :user_id, true)"
)


@event.listens_for(Session, "after_begin")
def _apply_tenant_context(session: Session, _transaction: object, connection: object) -> None:
    tenant_id = session.info.get("tenant_id")
    user_id = session.info.get("user_id")
    if tenant_id is None and user_id is None:
        return
    connection.execute(  # type: ignore[attr-defined]
        _TENANT_CONTEXT,
        {"tenant_id": str(tenant_id or ""), "user_id": str(user_id or "")},
    )


def asyncpg_dsn(url: str) -> str:
    """The asyncpg DSN of a SQLAlchemy database URL (`postgresql+asyncpg://…` → `postgresql://…`),
    password kept: for connections and pools opened with asyncpg directly."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _uuids_as_text(conn: asyncpg.Connection) -> None:
    # Rows go straight to JSON on the hot path; asyncpg's own UUID type is not serialisable.
    await conn.set_type_codec("uuid", encoder=str, decoder=str, schema="pg_catalog", format="text")


async def keep_session(_conn: asyncpg.Connection) -> None:
    """Pool reset for connections used only through tenant_connection: all their state is
    transaction-local (set_config(..., true)), and asyncpg still rolls back an open
    transaction before calling this, so the default RESET ALL/UNLISTEN/CLOSE ALL round trip
    per request buys nothing."""


@asynccontextmanager
async def tenant_connection(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, user_id: uuid.UUID | None = None
) -> AsyncIterator[asyncpg.Connection]:
    """A raw asyncpg connection in one tenant-scoped transaction, for hot read paths where
    SQLAlchemy's session costs more than the query (see bench/feed.py)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(TENANT_CONTEXT_SQL, str(tenant_id), str(user_id or ""))
        yield conn


class Database:
    """Owns the runtime role's engine and hands out tenant-scoped sessions."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 20,
        max_overflow: int = 10,
        statement_timeout_ms: int = 15_000,
        application_name: str = "courtside",
    ) -> None:
        self._server_settings = {
            "application_name": application_name,
            "statement_timeout": str(statement_timeout_ms),
            "idle_in_transaction_session_timeout": "60000",
        }
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=True,
            pool_recycle=1800,
            connect_args={"server_settings": self._server_settings},
        )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, application_name: str = "courtside"
    ) -> "Database":
        return cls(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            statement_timeout_ms=settings.db_statement_timeout_ms,
            application_name=application_name,
        )

    def session(
        self, tenant_id: uuid.UUID | None = None, user_id: uuid.UUID | None = None
    ) -> AsyncSession:
        session = self.sessionmaker()
        session.info["tenant_id"] = tenant_id
        session.info["user_id"] = user_id
        return session

    @asynccontextmanager
    async def transaction(
        self, tenant_id: uuid.UUID | None = None, user_id: uuid.UUID | None = None
    ) -> AsyncIterator[AsyncSession]:
        """One tenant-scoped transaction: commits on success, rolls back on error."""
        async with self.session(tenant_id, user_id) as session, session.begin():
            yield session

    async def create_raw_pool(self, url: str, *, size: int) -> asyncpg.Pool:
        """An asyncpg pool on the same role as the engine (see tenant_connection)."""
        return await asyncpg.create_pool(
            asyncpg_dsn(url),
            min_size=1,
            max_size=size,
            server_settings=self._server_settings,
            init=_uuids_as_text,
            reset=keep_session,
        )

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
