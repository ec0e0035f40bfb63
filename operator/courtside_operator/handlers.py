"""kopf glue only: each handler parses the Tenant, calls reconcile.py, writes status."""

import logging
from typing import Any

import kopf

from app.infra.settings import get_settings
from courtside_operator.crd import GROUP, PLURAL, VERSION
from courtside_operator.reconcile import (
    Outcome,
    TenantReconciler,
    condition,
    first_resync_delay,
)
from courtside_operator.secrets import KubernetesSecretStore
from courtside_operator.spec import TenantSpec

RESOURCE = (GROUP, VERSION, PLURAL)
Logger = logging.Logger | logging.LoggerAdapter[Any]
FINALIZER = "courtside.dev/tenant-cleanup"
_settings = get_settings()
_connection: dict[str, kopf.ConnectionInfo] = {}


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The API server: OPERATOR_KUBE_URL (tests), else in-cluster, else kubeconfig."""
    info: kopf.ConnectionInfo | None
    if _settings.operator_kube_url:
        # An emulator or a local proxy: no real credentials to present.
        info = kopf.ConnectionInfo(server=_settings.operator_kube_url, insecure=True)
    else:
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is not None:
        _connection["current"] = info
    return info


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    # The CRD's status is structural: keep kopf's bookkeeping in annotations instead.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    # A watch stream that stalls is dropped and reopened instead of waiting forever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.watching.inactivity_timeout = 600
    settings.posting.level = logging.INFO
    memo.reconciler = TenantReconciler(_settings)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    await memo.reconciler.close()


def _store() -> KubernetesSecretStore:
    info = _connection["current"]
    headers = {"Authorization": f"Bearer {info.token}"} if info.token else {}
    return KubernetesSecretStore(
        info.server, _settings.operator_namespace, headers, ssl=False if info.insecure else None
    )


def _owner(body: kopf.Body) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Tenant",
        "name": body.meta.name,
        "uid": body.meta.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _write_status(patch: kopf.Patch, outcome: Outcome) -> None:
    for key, value in outcome.status.items():
        patch.status[key] = value


async def _reconcile(
    body: kopf.Body, patch: kopf.Patch, memo: Any, retry: int, logger: Logger, drift_check: bool
) -> None:
    spec = TenantSpec.model_validate(dict(body.spec))
    outcome = await memo.reconciler.reconcile(
        spec,
        _store(),
        owner=_owner(body),
        generation=body.meta.get("generation"),
        previous=list(body.status.get("conditions", [])),
    )
    _write_status(patch, outcome)
    for action in outcome.actions:
        logger.info(action)
    if outcome.admin_invited and outcome.admin_invited["status"] != "True":
        # Posted as a Warning event; the resync sends the mail again on its own.
        logger.warning(outcome.admin_invited["message"])
    if drift_check and outcome.drift:
        kopf.warn(body, reason="DriftRepaired", message="; ".join(outcome.drift))
    if not outcome.ok:
        reason = next(c["message"] for c in outcome.status["conditions"] if c["type"] == "Ready")
        if not outcome.retryable:
            # A conflict or drift someone must resolve: no backoff loop; the timer's resync
            # looks again (a timer's PermanentError only ends that run).
            raise kopf.PermanentError(reason)
        # Failures stay visible in status and are retried with a growing delay.
        raise kopf.TemporaryError(reason, delay=min(300, 5 * 2 ** min(retry, 6)))


@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
@kopf.on.resume(*RESOURCE)
async def reconcile_tenant(
    body: kopf.Body, patch: kopf.Patch, memo: Any, retry: int, logger: Logger, **_: Any
) -> None:
    await _reconcile(body, patch, memo, retry, logger, drift_check=False)


@kopf.timer(
    *RESOURCE,
    interval=_settings.operator_resync_seconds,
    # Spread by uid over an interval, so all Tenants don't resync in the same second.
    initial_delay=lambda uid, **_: first_resync_delay(uid, _settings.operator_resync_seconds),
    idle=0,
)
async def resync_tenant(
    body: kopf.Body, patch: kopf.Patch, memo: Any, logger: Logger, retry: int = 0, **_: Any
) -> None:
    """Drift: compare the live role, its settings and the stored limits with the spec."""
    await _reconcile(body, patch, memo, retry, logger, drift_check=True)


@kopf.on.delete(*RESOURCE)
async def delete_tenant(
    body: kopf.Body, memo: Any, retry: int, patch: kopf.Patch, logger: Logger, **_: Any
) -> None:
    spec = TenantSpec.model_validate(dict(body.spec))
    try:
        actions = await memo.reconciler.finalize(spec, _store(), owner=_owner(body))
    except (OSError, TimeoutError) as exc:
        patch.status["conditions"] = [
            condition(
                "Ready",
                False,
                "DeletionPending",
                f"waiting for the database to delete the tenant: {exc}",
                list(body.status.get("conditions", [])),
                body.meta.get("generation"),
            )
        ]
        raise kopf.TemporaryError(
            f"database unreachable: {exc}", delay=min(300, 5 * 2 ** min(retry, 6))
        ) from exc
    for action in actions:
        logger.info(action)
