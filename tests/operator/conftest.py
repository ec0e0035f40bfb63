import uuid

import pytest
from courtside_operator.reconcile import TenantReconciler
from courtside_operator.secrets import FileSecretStore
from courtside_operator.spec import TenantSpec


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
