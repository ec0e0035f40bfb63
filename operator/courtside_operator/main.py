"""`courtside operator`: the real kopf operator for Tenants."""

import asyncio

import kopf

from app.infra.logging import configure_logging
from app.infra.settings import get_settings


def operator_kwargs() -> dict[str, object]:
    settings = get_settings()
    peering = settings.operator_peering
    return {
        "clusterwide": True,
        "standalone": not peering,
        "peering_name": peering or None,
        "priority": settings.operator_priority,
        "liveness_endpoint": f"http://0.0.0.0:{settings.operator_health_port}/healthz",
    }


def run_operator() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    import courtside_operator.handlers  # noqa: F401 - registers the handlers

    asyncio.run(kopf.operator(**operator_kwargs()))  # type: ignore[arg-type]


__all__ = ["run_operator", "operator_kwargs", "kopf"]
