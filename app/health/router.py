import asyncio

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.deps import ResourcesDep
from app.errors import ServiceUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(resources: ResourcesDep) -> dict[str, str]:
    """Readiness: PostgreSQL and Redis answer."""
    checks = {"database": resources.db.ping(), "redis": resources.redis.ping()}
    results = await asyncio.gather(
        *(asyncio.wait_for(c, timeout=2) for c in checks.values()), return_exceptions=True
    )
    failed = [name for name, r in zip(checks, results, strict=True) if isinstance(r, BaseException)]
    if failed:
        raise ServiceUnavailable(f"Not ready: {', '.join(failed)} unreachable.")
    return {"status": "ready"}


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
