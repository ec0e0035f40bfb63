"""A tenant's storage quota: bytes reserved by uploads under way, bytes its objects take.

Each function is a step of the caller's transaction (in the asset's tenant): it changes
the asset's own share (`reserved_bytes`, `stored_bytes`) and the tenant's totals in
tenant_storage together, so the totals always equal the sums over the tenant's assets.
A check against the quota is one conditional UPDATE of the tenant's row: concurrent
reservations and finalizes of one tenant serialize on that row's lock, and PostgreSQL
re-evaluates the condition on the row as the previous one left it, so together they can
never pass the quota.

A new upload must fit beside what is stored and what other uploads have reserved. A
finalize turns its own reservation into stored bytes and must fit beside what is stored:
other reservations are promises, and don't block the uploads that keep them. (Only a
quota lowered since the intent can refuse a finalize.)
"""

import uuid
from dataclasses import dataclass

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.infra.errors import QuotaExceeded
from app.media.models import MediaAsset

_ENSURE_ROW = text(
    "INSERT INTO tenant_storage (tenant_id) VALUES (:tenant_id) ON CONFLICT DO NOTHING"
)
# No row returned: the change would take the tenant over `quota`.
_RESERVE_WITHIN_QUOTA = text(
    "UPDATE tenant_storage SET reserved_bytes = reserved_bytes + :nbytes "
    "WHERE tenant_id = :tenant_id AND used_bytes + reserved_bytes + :nbytes <= :quota "
    "RETURNING tenant_id"
)
_SETTLE_WITHIN_QUOTA = text(
    "UPDATE tenant_storage SET reserved_bytes = reserved_bytes - :reserved, "
    "used_bytes = used_bytes + :stored "
    "WHERE tenant_id = :tenant_id AND used_bytes + :stored <= :quota "
    "RETURNING tenant_id"
)
_MOVE = text(
    "UPDATE tenant_storage SET reserved_bytes = reserved_bytes + :reserved, "
    "used_bytes = used_bytes + :stored WHERE tenant_id = :tenant_id"
)
_USAGE = text("SELECT used_bytes, reserved_bytes FROM tenant_storage WHERE tenant_id = :tenant_id")


@dataclass(frozen=True)
class StorageUsage:
    used_bytes: int
    reserved_bytes: int

    def remaining(self, quota_bytes: int) -> int:
        return max(0, quota_bytes - self.used_bytes - self.reserved_bytes)


async def usage(session: AsyncSession, tenant_id: uuid.UUID) -> StorageUsage:
    row = (await session.execute(_USAGE, {"tenant_id": tenant_id})).first()
    return StorageUsage(int(row.used_bytes), int(row.reserved_bytes)) if row else StorageUsage(0, 0)


async def _within_quota(
    session: AsyncSession,
    statement: TextClause,
    tenant_id: uuid.UUID,
    quota: int,
    needed: int,
    **values: int,
) -> None:
    await session.execute(_ENSURE_ROW, {"tenant_id": tenant_id})
    done = await session.scalar(statement, {"tenant_id": tenant_id, "quota": quota, **values})
    if done is None:
        now = await usage(session, tenant_id)
        raise QuotaExceeded(
            f"The tenant's storage quota leaves {now.remaining(quota)} bytes; this needs {needed}.",
            remaining_bytes=now.remaining(quota),
            quota_bytes=quota,
            used_bytes=now.used_bytes,
            reserved_bytes=now.reserved_bytes,
        )


async def _move(session: AsyncSession, tenant_id: uuid.UUID, *, reserved: int, stored: int) -> None:
    await session.execute(_ENSURE_ROW, {"tenant_id": tenant_id})
    await session.execute(_MOVE, {"tenant_id": tenant_id, "reserved": reserved, "stored": stored})


async def reserve(session: AsyncSession, asset: MediaAsset, nbytes: int, *, quota: int) -> None:
    """Reserve `nbytes` for the asset's upload, or raise QuotaExceeded (413) saying how
    many bytes remain, reserving nothing."""
    await _within_quota(
        session, _RESERVE_WITHIN_QUOTA, asset.tenant_id, quota, nbytes, nbytes=nbytes
    )
    asset.reserved_bytes += nbytes


async def settle_upload(
    session: AsyncSession, asset: MediaAsset, stored_bytes: int, *, quota: int
) -> None:
    """Turn the asset's reservation into `stored_bytes` of use if the stored bytes stay
    within the quota (lowered since the intent, it may refuse); QuotaExceeded leaves both
    as they were."""
    await _within_quota(
        session,
        _SETTLE_WITHIN_QUOTA,
        asset.tenant_id,
        quota,
        stored_bytes,
        reserved=asset.reserved_bytes,
        stored=stored_bytes,
    )
    asset.reserved_bytes = 0
    asset.stored_bytes += stored_bytes


async def add_stored(session: AsyncSession, asset: MediaAsset, nbytes: int) -> None:
    """Count `nbytes` more of the asset's objects (its renditions). Never refused: the
    original was admitted, and what processing derives from it is smaller."""
    await _move(session, asset.tenant_id, reserved=0, stored=nbytes)
    asset.stored_bytes += nbytes


async def release(session: AsyncSession, asset: MediaAsset) -> None:
    """Give back the asset's reservation (its upload expired or was deleted)."""
    if asset.reserved_bytes:
        await _move(session, asset.tenant_id, reserved=-asset.reserved_bytes, stored=0)
        asset.reserved_bytes = 0


async def free(session: AsyncSession, asset: MediaAsset) -> None:
    """Give back all the asset holds: its reservation and its stored bytes (deleted)."""
    if asset.reserved_bytes or asset.stored_bytes:
        await _move(
            session, asset.tenant_id, reserved=-asset.reserved_bytes, stored=-asset.stored_bytes
        )
        asset.reserved_bytes = 0
        asset.stored_bytes = 0
