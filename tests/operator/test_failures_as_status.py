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
    async def broken_usage(db, tenant_id):
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
