"""`courtside operator`: the real kopf operator for Tenants."""

import asyncio
import hashlib
import os
import socket
from collections.abc import Callable

import kopf
import structlog

from app.infra.logging import configure_logging
from app.infra.observability import serve_metrics
from app.infra.settings import Settings, get_settings


def pod_name() -> str:
    """The pod's name: POD_ID (the chart sets it from metadata.name, as kopf's docs say; kopf
    takes it as its peer identity), else the hostname, which is the pod's name too."""
    return os.environ.get("POD_ID") or socket.gethostname()


def peering_priority(settings: Settings, pod: str) -> int:
    """kopf's priority. With peering, only the highest-priority peer works and the others
    wait; peers sharing the highest priority all freeze (kopf's docs, "Peering"). So each
    pod gets its own, from its name (unique among live pods), unless OPERATOR_PRIORITY says."""
    if settings.operator_priority or not settings.operator_peering:
        return settings.operator_priority
    digest = hashlib.sha256(pod.encode()).digest()
    return 1 + int.from_bytes(digest[:4], "big") % (2**31 - 2)


def operator_kwargs() -> dict[str, object]:
    settings = get_settings()
    peering = settings.operator_peering
    return {
        "clusterwide": True,
        "standalone": not peering,
        "peering_name": peering or None,
        "priority": peering_priority(settings, pod_name()),
        "liveness_endpoint": f"http://0.0.0.0:{settings.operator_health_port}/healthz",
    }


def serve_operator_metrics(port: int) -> Callable[[], None] | None:
    """Prometheus /metrics (courtside_operator_reconcile_failures_total) on METRICS_PORT, the
    chart's `metrics` port, in a thread. A port already taken is logged, not fatal: the
    Tenants matter more than their metrics, and Prometheus sees the target down."""
    try:
        return serve_metrics(port)
    except OSError as exc:
        structlog.get_logger(__name__).error(
            "operator_metrics_unavailable", port=port, error=str(exc)
        )
        return None


def run_operator() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    import courtside_operator.handlers  # noqa: F401 - registers the handlers

    stop_metrics = serve_operator_metrics(settings.metrics_port)
    try:
        asyncio.run(kopf.operator(**operator_kwargs()))  # type: ignore[arg-type]
    finally:
        if stop_metrics is not None:
            stop_metrics()


__all__ = [
    "run_operator",
    "operator_kwargs",
    "peering_priority",
    "pod_name",
    "serve_operator_metrics",
    "kopf",
]
