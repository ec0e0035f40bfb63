"""status.usage: the storage totals the API keeps (tenant_storage) and the limits in effect,
as the operator reports them (reconcile called directly; test_kopf_operator.py has the
real operator writing them to the Tenant object)."""

import uuid

from app.infra.db import Database
from app.media import quota
from app.media.models import MediaAsset, MediaStatus
from app.tenants.provisioning import tenant_id_for_slug
from tests.operator.conftest import make_spec

QUOTA = 10**12


async def add_media(
    db: Database,
    tenant_id: uuid.UUID,
    *,
    status: MediaStatus,
    size: int,
    renditions: int = 0,
) -> None:
    """An asset as the media flow leaves it: an upload under way holds its declared size
    as a reservation; a finalized one stores its original, and its renditions once made."""
    async with db.transaction(tenant_id) as session:
        media_id = uuid.uuid4()
        asset = MediaAsset(
            id=media_id,
            tenant_id=tenant_id,
            owner_id=uuid.uuid4(),
            status=status,
            content_type="video/mp4",
            size_bytes=size,
            s3_key=f"tenants/{tenant_id}/media/{media_id}/original",
        )
        session.add(asset)
        await session.flush()
        await quota.reserve(session, asset, size, quota=QUOTA)
        if status != MediaStatus.PENDING_UPLOAD:
            await quota.settle_upload(session, asset, size, quota=QUOTA)
        if renditions:
            await quota.add_stored(session, asset, renditions)


async def test_status_reports_used_and_reserved_bytes_and_the_tenants_limits(reconciler, store, db):
    spec = make_spec(storage={"maxUploadBytes": 20_000_000, "quotaBytes": 900_000_000})
    assert (await reconciler.reconcile(spec, store, generation=1)).ok
    tenant_id = tenant_id_for_slug(spec.slug)
    await add_media(db, tenant_id, status=MediaStatus.READY, size=5_000, renditions=1_500)
    await add_media(db, tenant_id, status=MediaStatus.PENDING_UPLOAD, size=7_000)

    outcome = await reconciler.reconcile(spec, store, generation=1)

    assert outcome.ok
    # Renditions count; the pending upload counts as reserved, not used (a sum of
    # media_assets.size_bytes would say 12,000 used).
    assert outcome.status["usage"] == {
        "members": 0,
        "storageUsedBytes": 6_500,
        "storageReservedBytes": 7_000,
        "storageQuotaBytes": 900_000_000,
        "maxUploadBytes": 20_000_000,
    }


async def test_a_tenant_without_media_or_limits_reports_zero_and_the_platform_defaults(
    reconciler, store, settings
):
    outcome = await reconciler.reconcile(make_spec(), store, generation=1)

    assert outcome.ok
    assert outcome.status["usage"] == {
        "members": 0,
        "storageUsedBytes": 0,
        "storageReservedBytes": 0,
        "storageQuotaBytes": settings.max_tenant_storage_gb * 1024**3,
        "maxUploadBytes": settings.max_upload_size_mb * 1024 * 1024,
    }


async def test_a_lowered_quota_is_reported_with_the_usage_it_now_limits(reconciler, store, db):
    spec = make_spec(storage={"quotaBytes": 50_000})
    assert (await reconciler.reconcile(spec, store, generation=1)).ok
    await add_media(db, tenant_id_for_slug(spec.slug), status=MediaStatus.PROCESSING, size=30_000)

    lowered = make_spec(slug=spec.slug, storage={"quotaBytes": 10_000})
    outcome = await reconciler.reconcile(lowered, store, generation=2)

    usage = outcome.status["usage"]
    assert (usage["storageUsedBytes"], usage["storageQuotaBytes"]) == (30_000, 10_000)
