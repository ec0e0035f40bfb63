"""kopf glue only: each handler parses the Tenant, calls reconcile.py, writes status."""

import logging
from typing import Any

import kopf
from prometheus_client import Counter

from app.infra.settings import get_settings
from courtside_operator.crd import GROUP, PLURAL, VERSION
from courtside_operator.reconcile import (
    Failure,
    Outcome,
    TenantReconciler,
    condition,
    failure_of,
    first_resync_delay,
)
from courtside_operator.secrets import KubernetesApi, KubernetesApiError, KubernetesSecretStore
from courtside_operator.spec import TenantSpec

RESOURCE = (GROUP, VERSION, PLURAL)
Logger = logging.Logger | logging.LoggerAdapter[Any]
FINALIZER = "courtside.dev/tenant-cleanup"
_settings = get_settings()
# Served on METRICS_PORT (main.py); the chart's CourtsideTenantReconcileFailing alerts on it.
RECONCILE_FAILURES = Counter(
    "courtside_operator_reconcile_failures_total",
    "Tenant reconciles and deletions that ended not ok, by the Ready condition's reason",
    ["reason"],
)


@kopf.on.login()
def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """The API server: OPERATOR_KUBE_URL (tests, `kubectl proxy`: no credentials; an https
    URL is verified against the system's CAs), else in-cluster, else kubeconfig. What this
    returns is kopf's own connection and, through memo.kube, the Secret store's: the same
    CA, client certificate and token (kopf calls it again when the API answers 401)."""
    info: kopf.ConnectionInfo | None
    if _settings.operator_kube_url:
        info = kopf.ConnectionInfo(server=_settings.operator_kube_url)
    else:
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is not None:
        _kube(memo).info = info
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
    _kube(memo)  # in the operator's memo before kopf copies it for each object


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    await memo.reconciler.close()
    await _kube(memo).close()


class _Kube:
    """The operator's way to the API server, beside kopf's own: the credentials of kopf's
    latest login and a client over them. One per operator, in its memo (kopf gives each
    object a shallow copy of the memo, so they all see this one and its updates)."""

    def __init__(self) -> None:
        self.info: kopf.ConnectionInfo | None = None
        self.api: KubernetesApi | None = None
        self.closed = False

    async def store(self) -> KubernetesSecretStore:
        """A new login (a rotated token) gets a new client; the previous one is closed."""
        if self.closed:
            # A handler still running while kopf cleans up: no new client to leak.
            raise KubernetesApiError("the operator is stopping")
        if self.info is None:
            raise KubernetesApiError("no credentials for the Kubernetes API (no login yet)")
        api, previous = self.api, self.api
        if api is None or api.info is not self.info:
            api = self.api = KubernetesApi(self.info)
            if previous is not None:
                await previous.close()
        return KubernetesSecretStore(api, _settings.operator_namespace)

    async def close(self) -> None:
        self.closed = True
        if self.api is not None:
            await self.api.close()
            self.api = None


def _kube(memo: Any) -> _Kube:
    kube: _Kube = memo.setdefault("kube", _Kube())
    return kube


async def _store(memo: Any) -> KubernetesSecretStore:
    return await _kube(memo).store()


def _owner(body: kopf.Body) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Tenant",
        "name": body.meta.name,
        "uid": body.meta.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _api_failure(
    exc: KubernetesApiError, previous: list[dict[str, Any]], generation: int | None
) -> Outcome:
    """Ready=False with reason KubernetesApiError; the other conditions stay as they were."""
    ready = condition("Ready", False, exc.reason, exc.message, previous, generation)
    kept = [c for c in previous if c.get("type") != "Ready"]
    return Outcome(
        ok=False, status={"observedGeneration": generation, "conditions": [*kept, ready]}
    )


def _write_status(patch: kopf.Patch, outcome: Outcome) -> None:
    for key, value in outcome.status.items():
        patch.status[key] = value


async def _reconcile(
    body: kopf.Body, patch: kopf.Patch, memo: Any, retry: int, logger: Logger, drift_check: bool
) -> None:
    spec = TenantSpec.model_validate(dict(body.spec))
    previous = list(body.status.get("conditions", []))
    generation = body.meta.get("generation")
    try:
        outcome = await memo.reconciler.reconcile(
            spec,
            await _store(memo),
            owner=_owner(body),
            generation=generation,
            previous=previous,
        )
    except KubernetesApiError as exc:
        # Not the database: the API server refused (RBAC, a missing namespace) or could not
        # be reached (TLS, network). Said as such, and retried like any failure.
        outcome = _api_failure(exc, previous, generation)
    _write_status(patch, outcome)
    for action in outcome.actions:
        logger.info(action)
    if outcome.admin_invited and outcome.admin_invited["status"] != "True":
        # Posted as a Warning event; the resync sends the mail again on its own.
        logger.warning(outcome.admin_invited["message"])
    if drift_check and outcome.drift:
        kopf.warn(body, reason="DriftRepaired", message="; ".join(outcome.drift))
    if not outcome.ok:
        ready = next(c for c in outcome.status["conditions"] if c["type"] == "Ready")
        RECONCILE_FAILURES.labels(reason=ready["reason"]).inc()
        reason = ready["message"]
        if not outcome.retryable:
            # A conflict or drift someone must resolve: no backoff loop; the timer's resync
            # looks again (a timer's PermanentError only ends that run).
            raise kopf.PermanentError(reason)
        # Failures stay visible in status and are retried with a growing delay.
        raise kopf.TemporaryError(reason, delay=_backoff(retry))


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


def _backoff(retry: int) -> float:
    return min(300, 5 * 2 ** min(retry, 6))


def _deletion_failure(exc: Exception) -> Failure:
    """failure_of's mapping; the Kubernetes API's own reason when it refused or was away."""
    if isinstance(exc, KubernetesApiError):
        return Failure(exc.reason, exc.message, retryable=True)
    return failure_of(exc)


@kopf.on.delete(*RESOURCE)
async def delete_tenant(
    body: kopf.Body, memo: Any, retry: int, patch: kopf.Patch, logger: Logger, **_: Any
) -> None:
    spec = TenantSpec.model_validate(dict(body.spec))
    try:
        actions = await memo.reconciler.finalize(spec, await _store(memo), owner=_owner(body))
    except Exception as exc:
        # Said in status like a reconcile's failure: Deleting and Ready False with the
        # failure's reason; the other conditions stay as they were.
        failure = _deletion_failure(exc)
        previous = list(body.status.get("conditions", []))
        generation = body.meta.get("generation")
        message = f"the tenant is not deleted yet: {failure.message}"
        patch.status["conditions"] = [
            *(c for c in previous if c.get("type") not in ("Deleting", "Ready")),
            condition("Deleting", False, failure.reason, message, previous, generation),
            condition("Ready", False, failure.reason, message, previous, generation),
        ]
        RECONCILE_FAILURES.labels(reason=failure.reason).inc()
        if failure.reason == "ReconcileFailed":  # unexpected: its traceback, once
            logger.warning(f"deletion failed: {failure.message}", exc_info=exc)
        if failure.retryable:
            raise kopf.TemporaryError(message, delay=_backoff(retry)) from exc
        # Not a PermanentError, as a reconcile's is: kopf takes a deletion handler's
        # PermanentError as done and removes the finalizer, releasing the Tenant with its
        # rows, objects and role left behind. What retrying soon won't fix (a conflict
        # someone must resolve) is looked at again once per resync interval instead.
        raise kopf.TemporaryError(message, delay=_settings.operator_resync_seconds) from exc
    for action in actions:
        logger.info(action)
