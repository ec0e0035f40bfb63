"""Spaces and who is in them. Who may see or change which space is decided in
app/spaces/permissions.py; each public function here is one unit of work in the caller's
tenant (docs/architecture.md, "The service contract")."""

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select

from app.audit import service as audit
from app.auth.caller import Caller
from app.infra.db import Database
from app.infra.errors import Conflict, NotFound
from app.infra.pagination import Page, after_cursor, page_of
from app.infra.request_meta import RequestMeta
from app.spaces import permissions
from app.spaces.models import Space, SpaceMember
from app.tenants.models import TenantMembership


@dataclass(frozen=True)
class SpaceDetail:
    space: Space
    member_ids: list[uuid.UUID]


async def create_space(
    db: Database, caller: Caller, *, name: str, description: str | None
) -> SpaceDetail:
    """A new space owned by the caller (a COACH or an ADMIN), who becomes its first member."""
    permissions.check_can_create_space(caller)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        space = Space(
            tenant_id=caller.tenant_id, name=name, description=description, owner_id=caller.user_id
        )
        session.add(space)
        await session.flush()
        session.add(
            SpaceMember(tenant_id=caller.tenant_id, space_id=space.id, user_id=caller.user_id)
        )
    return SpaceDetail(space, [caller.user_id])


async def list_spaces(
    db: Database, caller: Caller, *, limit: int, cursor: str | None
) -> Page[Space]:
    """Spaces the caller may see, oldest first: all of the tenant's for an ADMIN, else their
    own."""
    query = permissions.only_visible_spaces(select(Space), caller)
    query = after_cursor(query, Space.created_at, Space.id, cursor).limit(limit + 1)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        rows = list((await session.scalars(query)).all())
    return page_of(rows, limit, lambda s: (s.created_at, s.id))


async def get_space(db: Database, caller: Caller, space_id: uuid.UUID) -> SpaceDetail:
    """The space and its members' ids, if the caller may see it (else NotFound)."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        space = await permissions.visible_space(session, caller, space_id)
        member_ids = list(
            (
                await session.scalars(
                    select(SpaceMember.user_id)
                    .where(SpaceMember.space_id == space_id)
                    .order_by(SpaceMember.created_at)
                )
            ).all()
        )
    return SpaceDetail(space, member_ids)


async def update_space(
    db: Database, caller: Caller, space_id: uuid.UUID, *, changes: dict[str, object]
) -> Space:
    """Rename or redescribe a space the caller manages."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        space = await permissions.managed_space(session, caller, space_id)
        for field in ("name", "description"):
            if field in changes:
                setattr(space, field, changes[field])
    return space


async def add_member(
    db: Database,
    caller: Caller,
    space_id: uuid.UUID,
    user_id: uuid.UUID,
    meta: RequestMeta | None,
) -> None:
    """Add a member of the tenant to a space the caller manages; audited."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        await permissions.managed_space(session, caller, space_id)
        in_tenant = await session.scalar(
            select(TenantMembership.id).where(TenantMembership.user_id == user_id)
        )
        if in_tenant is None:
            raise NotFound("User not found.")
        if await session.scalar(select(permissions.is_member(space_id, user_id))):
            raise Conflict("Already a member of this space.")
        session.add(SpaceMember(tenant_id=caller.tenant_id, space_id=space_id, user_id=user_id))
        audit.record_by(
            session,
            caller,
            action="space.member_added",
            meta=meta,
            target_type="space",
            target_id=space_id,
            details={"user_id": str(user_id)},
        )


async def remove_member(
    db: Database,
    caller: Caller,
    space_id: uuid.UUID,
    user_id: uuid.UUID,
    meta: RequestMeta | None,
) -> None:
    """The space's coach or an ADMIN removes anyone but the owner; members may leave;
    audited."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        space = await permissions.visible_space(session, caller, space_id)
        permissions.check_can_remove_member(caller, space, user_id)
        if user_id == space.owner_id:
            raise Conflict("The space's owner cannot be removed.")
        result = await session.execute(
            delete(SpaceMember).where(
                SpaceMember.space_id == space_id, SpaceMember.user_id == user_id
            )
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound("Member not found.")
        audit.record_by(
            session,
            caller,
            action="space.member_removed",
            meta=meta,
            target_type="space",
            target_id=space_id,
            details={"user_id": str(user_id)},
        )
