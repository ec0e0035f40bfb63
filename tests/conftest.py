import random
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from app.infra.db import Database, asyncpg_dsn
from app.infra.settings import Settings, get_settings
from app.main import create_app
from tests import factories
from tests.harness import Services, start_services


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    started = start_services(tmp_path_factory.mktemp("services"))
    get_settings.cache_clear()
    factories.use_mailbox(started.smtp.messages)  # factories read mail as users do
    yield started
    started.stop()


@pytest.fixture(scope="session")
def settings(services: Services) -> Settings:
    return services.settings


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with LifespanManager(application):
        yield application


def random_client_ip() -> str:
    # Each test client gets its own address, so per-IP limits and throttles don't leak
    # between tests.
    return f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(random_client_ip(), 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://courtside.test") as c:
        yield c


@pytest.fixture(scope="session")
async def db(settings: Settings) -> AsyncIterator[Database]:
    """The runtime role, as the API and workers connect."""
    database = Database.from_settings(settings, application_name="courtside-tests")
    yield database
    await database.dispose()


@pytest.fixture
async def runtime_conn(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A raw connection as the runtime role (NOSUPERUSER, NOBYPASSRLS)."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    yield conn
    await conn.close()


@pytest.fixture
async def superuser_conn(services: Services) -> AsyncIterator[asyncpg.Connection]:
    """For reading the catalog and arranging state (never for asserting isolation)."""
    conn = await asyncpg.connect(
        asyncpg_dsn(
            make_url(services.admin_url)
            .set(database=services.database)
            .render_as_string(hide_password=False)
        )
    )
    yield conn
    await conn.close()
