"""The baseline for bench/feed.py: bare Starlette + asyncpg running the product's own feed
query inside the same tenant-scoped (RLS) transaction, with no auth, limits or framework."""

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.infra.db import TENANT_CONTEXT_SQL, asyncpg_dsn, keep_session
from app.posts.service import _SPACE_FEED

pool: asyncpg.Pool


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    global pool
    dsn = asyncpg_dsn(os.environ["DATABASE_URL"])

    async def init(conn: asyncpg.Connection) -> None:
        await conn.set_type_codec(
            "uuid", encoder=str, decoder=str, schema="pg_catalog", format="text"
        )

    # Same pool settings as the product's read pool (app/infra/db.py: no per-release RESET).
    pool = await asyncpg.create_pool(dsn, min_size=32, max_size=32, init=init, reset=keep_session)
    gc.freeze()  # as the product does after startup (app/main.py)
    yield
    await pool.close()


async def feed(request: Request) -> Response:
    params = request.query_params
    tenant, user = params["tenant"], params["user"]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(TENANT_CONTEXT_SQL, tenant, user)
        rows = await conn.fetch(
            _SPACE_FEED,
            params["space_id"],
            False,
            user,
            int(params.get("limit", 20)) + 1,
            None,
            None,
        )
    return Response(
        orjson.dumps({"items": [dict(r) for r in rows[:20]]}), media_type="application/json"
    )


async def healthz(_: Request) -> Response:
    return Response(b"ok")


app = Starlette(routes=[Route("/feed", feed), Route("/healthz", healthz)], lifespan=lifespan)

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ["BARE_PORT"]),
        log_level="warning",
        loop="uvloop",
        http="httptools",
        access_log=False,
    )
