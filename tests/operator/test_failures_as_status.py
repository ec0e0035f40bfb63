"""Every way a reconcile can fail ends in the Tenant's status: all condition types present,
Ready=False with a reason and message, and the kopf handler told whether to retry with
backoff (TemporaryError) or to wait for the resync (PermanentError)."""

import logging
import uuid

import kopf
import pytest
from courtside_operator.reconcile import TenantReconciler

from app.tenants import provisioning
from courtside.local.devstack import free_port
from tests.operator.conftest import make_spec
from tests.operator.test_reconcile import conditions

CONDITION_TYPES = {
    "DatabaseReady",
    "QuotasApplied",
    "RateLimitsApplied",
    "Ready",
    "AdminInvited",
}


def assert_not_ready(outcome, reason):
    state = conditions(outcome)
    assert set(state) == CONDITION_TYPES
    assert (state["Ready"]["status"], state["Ready"]["reason"]) == ("False", reason)
    assert state["Ready"]["message"]
    assert outcome.ok is False
    return state


@pytest.fixture
async def unreachable(settings):
    dead = settings.model_copy(
        update={"migration_database_url": f"postgresql+asyncpg://x:y@127.0.0.1:{free_port()}/none"}
    )
    reconciler = TenantReconciler(dead)
    yield reconciler
    await reconciler.close()


@pytest.fixture
async def unique_violation_for(superuser_conn):
    """A trigger that makes PostgreSQL refuse writes of one slug's tenant row with a
    unique_violation, as a slug or id another writer took would."""
    slugs: list[str] = []

    async def arm(slug: str) -> None:
        slugs.append(slug)
        await superuser_conn.execute(
            f"""
            CREATE FUNCTION refuse_{len(slugs)}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              RAISE EXCEPTION 'duplicate key value violates unique constraint "tenants_x"'
                USING ERRCODE = 'unique_violation';
            END $$;
            CREATE TRIGGER refuse_{len(slugs)} BEFORE INSERT OR UPDATE ON tenants
              FOR EACH ROW WHEN (NEW.slug = '{slug}') EXECUTE FUNCTION refuse_{len(slugs)}();
            """
        )

    yield arm
    for i in range(1, len(slugs) + 1):
        await superuser_conn.execute(f"DROP TRIGGER refuse_{i} ON tenants")
        await superuser_conn.execute(f"DROP FUNCTION refuse_{i}()")


async def test_an_unreachable_database_keeps_every_condition_and_is_retried(unreachable, store):
    outcome = await unreachable.reconcile(make_spec(), store, generation=2)
    state = assert_not_ready(outcome, "DatabaseUnreachable")
    assert state["DatabaseReady"]["status"] == "False"
    # Nothing is known about the limits: Unknown, not dropped and not claimed True.
    assert state["QuotasApplied"]["status"] == state["RateLimitsApplied"]["status"] == "Unknown"
    assert state["AdminInvited"]["status"] == "Unknown"
    assert outcome.retryable


async def test_a_database_error_keeps_conditions_an_earlier_run_set(reconciler, unreachable, store):
    spec = make_spec()
    first = await reconciler.reconcile(spec, store, generation=1)
    mailed = conditions(first)["AdminInvited"]
    outcome = await unreachable.reconcile(
        spec, store, generation=1, previous=first.status["conditions"]
    )
    state = assert_not_ready(outcome, "DatabaseUnreachable")
    # The record that the mail went out survives (else the next run would mail again).
    assert state["AdminInvited"] == mailed


async def test_an_integrity_error_is_a_condition_not_a_silent_retry(
    reconciler, store, unique_violation_for, superuser_conn
):
    spec = make_spec()
    await unique_violation_for(spec.slug)
    outcome = await reconciler.reconcile(spec, store, generation=1)
    state = assert_not_ready(outcome, "DatabaseConflict")
    assert "unique constraint" in state["Ready"]["message"]
    assert "[SQL:" not in state["Ready"]["message"]  # the driver's words, not the statement
    assert state["QuotasApplied"]["status"] == "False"
    assert state["DatabaseReady"]["reason"] == "DatabaseConflict"
    # Retrying in seconds won't make the constraint go away: the resync looks again.
    assert outcome.retryable is False
    assert (
        await superuser_conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", spec.role_name)
        is None
    )


async def test_an_unexpected_exception_is_reported_with_its_type(reconciler, store, monkeypatch):
    async def broken_usage(db, tenant_id, settings):
        raise ValueError("usage went wrong")

    monkeypatch.setattr(provisioning, "usage", broken_usage)
    outcome = await reconciler.reconcile(make_spec(), store, generation=1)
    state = assert_not_ready(outcome, "ReconcileFailed")
    assert state["Ready"]["message"] == "unexpected ValueError: usage went wrong"
    # The steps before it did their work, and say so.
    assert state["DatabaseReady"]["status"] == "True"
    assert state["QuotasApplied"]["status"] == state["RateLimitsApplied"]["status"] == "True"
    assert outcome.retryable


async def run_handler(monkeypatch, reconciler, store, spec):
    """handlers._reconcile as kopf calls it, with this reconciler and store."""
    # Imported here, as the kopf tests do: handlers reads its settings (the timer's
    # interval) at import, which must come after the test services set the environment.
    from courtside_operator import handlers

    async def fake_store(*_):
        return store

    monkeypatch.setattr(handlers, "_store", fake_store)
    body = kopf.Body(
        {
            "apiVersion": "courtside.dev/v1",
            "kind": "Tenant",
            "metadata": {"name": spec.slug, "uid": str(uuid.uuid4()), "generation": 1},
            "spec": spec.model_dump(by_alias=True),
            "status": {},
        }
    )
    patch = kopf.Patch()
    memo = kopf.Memo()
    memo.reconciler = reconciler
    with pytest.raises((kopf.TemporaryError, kopf.PermanentError)) as raised:
        await handlers._reconcile(
            body, patch, memo, 0, logging.getLogger("test"), drift_check=False
        )
    ready = {c["type"]: c for c in patch["status"]["conditions"]}["Ready"]
    return raised.value, ready


async def test_the_handler_retries_an_unreachable_database_with_backoff(
    monkeypatch, unreachable, store
):
    error, ready = await run_handler(monkeypatch, unreachable, store, make_spec())
    assert isinstance(error, kopf.TemporaryError)
    assert ready["reason"] == "DatabaseUnreachable"


async def test_the_handler_stops_retrying_what_retrying_cannot_fix(
    monkeypatch, reconciler, store, unique_violation_for
):
    spec = make_spec()
    await unique_violation_for(spec.slug)
    error, ready = await run_handler(monkeypatch, reconciler, store, spec)
    assert isinstance(error, kopf.PermanentError)
    assert ready["reason"] == "DatabaseConflict"


def failures_counted(reason):
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value(
        "courtside_operator_reconcile_failures_total", {"reason": reason}
    )
    return value or 0.0


async def test_a_failed_reconcile_is_counted_by_reason(monkeypatch, unreachable, store):
    before = failures_counted("DatabaseUnreachable")
    await run_handler(monkeypatch, unreachable, store, make_spec())
    assert failures_counted("DatabaseUnreachable") == before + 1


class FailingFinalize:
    """A reconciler whose deletion stops on `error`, as the real one's would."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def finalize(self, spec, store, owner=None):
        raise self.error


EARLIER = [
    {
        "type": "AdminInvited",
        "status": "True",
        "reason": "InvitationSent",
        "message": "invitation mailed to a@b.io",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    },
    {
        "type": "Ready",
        "status": "True",
        "reason": "Reconciled",
        "message": "tenant matches its spec",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    },
]


async def run_delete_handler(monkeypatch, error, retry=0):
    """handlers.delete_tenant as kopf calls it on a Tenant being deleted."""
    from courtside_operator import handlers

    async def fake_store(*_):
        return object()

    monkeypatch.setattr(handlers, "_store", fake_store)
    spec = make_spec()
    body = kopf.Body(
        {
            "apiVersion": "courtside.dev/v1",
            "kind": "Tenant",
            "metadata": {"name": spec.slug, "uid": str(uuid.uuid4()), "generation": 3},
            "spec": spec.model_dump(by_alias=True),
            "status": {"conditions": EARLIER},
        }
    )
    patch = kopf.Patch()
    memo = kopf.Memo()
    memo.reconciler = FailingFinalize(error)
    with pytest.raises((kopf.TemporaryError, kopf.PermanentError)) as raised:
        await handlers.delete_tenant(
            body=body, memo=memo, retry=retry, patch=patch, logger=logging.getLogger("test")
        )
    return raised.value, {c["type"]: c for c in patch["status"]["conditions"]}


async def test_a_deletion_the_database_refuses_is_a_condition_and_keeps_the_finalizer(
    monkeypatch, settings
):
    import asyncpg
    from courtside_operator import handlers
    from sqlalchemy import exc as sa_exc

    refused = sa_exc.IntegrityError(
        "DELETE FROM tenants WHERE id = $1",
        ("x",),
        asyncpg.ForeignKeyViolationError("update or delete on table violates foreign key"),
    )
    before = failures_counted("DatabaseConflict")
    error, state = await run_delete_handler(monkeypatch, refused)
    assert set(state) == {"AdminInvited", "Ready", "Deleting"}
    assert state["AdminInvited"] == EARLIER[0]  # kept as it was
    for type_ in ("Ready", "Deleting"):
        assert (state[type_]["status"], state[type_]["reason"]) == ("False", "DatabaseConflict")
        assert "foreign key" in state[type_]["message"]
        assert "[SQL:" not in state[type_]["message"]
        assert state[type_]["observedGeneration"] == 3
    # Not a PermanentError: kopf would take the handler as done and remove the finalizer,
    # releasing the Tenant with its rows and role left behind. Retried at the resync's pace.
    assert isinstance(error, kopf.TemporaryError)
    assert error.delay == handlers._settings.operator_resync_seconds
    assert failures_counted("DatabaseConflict") == before + 1


async def test_an_unexpected_deletion_failure_is_reported_with_its_type_and_retried(
    monkeypatch, settings
):
    before = failures_counted("ReconcileFailed")
    error, state = await run_delete_handler(monkeypatch, ValueError("purge went wrong"), retry=2)
    for type_ in ("Ready", "Deleting"):
        assert (state[type_]["status"], state[type_]["reason"]) == ("False", "ReconcileFailed")
        assert "unexpected ValueError: purge went wrong" in state[type_]["message"]
    assert isinstance(error, kopf.TemporaryError)
    assert error.delay == 20  # the reconcile path's backoff
    assert failures_counted("ReconcileFailed") == before + 1


async def test_an_unreachable_kubernetes_api_during_deletion_keeps_its_reason(
    monkeypatch, settings
):
    from courtside_operator.secrets import KubernetesApiError

    error, state = await run_delete_handler(
        monkeypatch, KubernetesApiError("connecting to https://k8s: refused")
    )
    assert state["Deleting"]["reason"] == state["Ready"]["reason"] == "KubernetesApiError"
    assert "connecting to https://k8s" in state["Deleting"]["message"]
    assert isinstance(error, kopf.TemporaryError) and error.delay == 5


def test_the_operator_serves_its_failure_counter_on_the_metrics_port(settings):
    import httpx
    from courtside_operator import handlers  # noqa: F401 - defines the counter
    from courtside_operator.main import serve_operator_metrics

    port = free_port()
    stop = serve_operator_metrics(port)
    assert stop is not None
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        stop()
    assert "# TYPE courtside_operator_reconcile_failures_total counter" in text
