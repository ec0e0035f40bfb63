import asyncio

import structlog
from fastapi import APIRouter, Depends

from app.deps import ResourcesDep, ip_rate_limit
from app.infra.errors import ServiceUnavailable

router = APIRouter(tags=["health"])
log = structlog.get_logger("courtside.health")

# Prometheus metrics are not here: they are served on METRICS_PORT (app/infra/observability.py).


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process serves requests."""
    return {"status": "ok"}


# Reachable through the ingress and it touches PostgreSQL and Redis: limited per client
# address like login, and it says only ready or not (what failed goes to the log).
@router.get("/readyz", dependencies=[Depends(ip_rate_limit)])
async def readyz(resources: ResourcesDep) -> dict[str, str]:
    """Readiness: PostgreSQL and Redis answer."""
    checks = {"database": resources.db.ping(), "redis": resources.redis.ping()}
    results = await asyncio.gather(
        *(asyncio.wait_for(c, timeout=2) for c in checks.values()), return_exceptions=True
    )
    failed = [name for name, r in zip(checks, results, strict=True) if isinstance(r, BaseException)]
    if failed:
        log.warning("not_ready", unreachable=failed)
        raise ServiceUnavailable("Not ready.")
    return {"status": "ready"}
