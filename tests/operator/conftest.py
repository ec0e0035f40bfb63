import uuid
from pathlib import Path

import pytest
from courtside_operator.reconcile import TenantReconciler
from courtside_operator.secrets import FileSecretStore
from courtside_operator.spec import TenantSpec
from sqlalchemy.engine import make_url

from app.infra.settings import Settings


@pytest.fixture
async def reconciler(settings):
    reconciler = TenantReconciler(settings)
    yield reconciler
    await reconciler.close()


@pytest.fixture
def store(tmp_path):
    return FileSecretStore(tmp_path / "secrets")


def make_spec(**overrides) -> TenantSpec:
    slug = overrides.pop("slug", f"club-{uuid.uuid4().hex[:8]}")
    return TenantSpec.model_validate(
        {"slug": slug, "displayName": "Club", "adminEmail": f"admin@{slug}.example", **overrides}
    )


def role_dsn(settings: Settings, role: str, password: str) -> str:
    """A plain PostgreSQL URL logging in as `role` on the product's database."""
    return (
        make_url(settings.database_url)
        .set(drivername="postgresql", username=role, password=password)
        .render_as_string(hide_password=False)
    )


async def onboard_tenant(settings: Settings, tmp_path: Path) -> tuple[TenantSpec, dict[str, str]]:
    """A tenant onboarded as the operator does it, and the Secret it wrote: the username
    and password of the tenant's own database role, as the tenant holds them."""
    reconciler = TenantReconciler(settings)
    store = FileSecretStore(tmp_path / "secrets")
    spec = make_spec()
    try:
        assert (await reconciler.reconcile(spec, store)).ok
    finally:
        await reconciler.close()
    secret = await store.get(spec.secret_name)
    assert secret is not None
    return spec, secret
