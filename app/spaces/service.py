"""Spaces and who is in them.

Inside a tenant: ADMIN sees and manages every space; a COACH creates spaces and manages the
ones they own; everyone else sees only spaces they are a member of. A space the caller may
not see does not exist for them (404), so ids never confirm anything across spaces.
"""

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth.caller import Caller
from app.infra.errors import Conflict, Forbidden, NotFound
from app.infra.pagination import Page, after_cursor, page_of
from app.infra.request_meta import RequestMeta
from app.spaces.models import Space, SpaceMember
from app.tenants.models import Role, TenantMembership


@dataclass(frozen=True)
class SpaceDetail:
    space: Space
    member_ids: list[uuid.UUID]


def _is_member(space_id: object, user_id: uuid.UUID):  # noqa: ANN202 - SQL expression
    return exists().where(SpaceMember.space_id == space_id, SpaceMember.user_id == user_id)


async def visible_space(session: AsyncSession, caller: Caller, space_id: uuid.UUID) -> Space:
    """The space, if the caller may see it; else NotFound. Call inside a transaction."""
    query = select(Space).where(Space.id == space_id)
    if caller.role != Role.ADMIN:
        query = query.where(_is_member(Space.id, caller.user_id))
    space = await session.scalar(query)
    if space is None:
        raise NotFound("Space not found.")
    return space


def can_manage(caller: Caller, space: Space) -> bool:
    return caller.role == Role.ADMIN or (
        caller.role == Role.COACH and space.owner_id == caller.user_id
    )


async def _managed_space(session: AsyncSession, caller: Caller, space_id: uuid.UUID) -> Space:
    space = await visible_space(session, caller, space_id)
    if not can_manage(caller, space):
        raise Forbidden("Only the space's coach or an ADMIN can change it.")
    return space


async def create_space(
    session: AsyncSession, caller: Caller, *, name: str, description: str | None
) -> Space:
    if caller.role not in (Role.ADMIN, Role.COACH):
        raise Forbidden("Only coaches and admins create spaces.")
    async with session.begin():
        space = Space(
            tenant_id=caller.tenant_id, name=name, description=description, owner_id=caller.user_id
        )
        session.add(space)
        await session.flush()
        session.add(
            SpaceMember(tenant_id=caller.tenant_id, space_id=space.id, user_id=caller.user_id)
        )
    return space


async def list_spaces(
    session: AsyncSession, caller: Caller, *, limit: int, cursor: str | None
) -> Page[Space]:
    query = select(Space)
    if caller.role != Role.ADMIN:
        query = query.where(_is_member(Space.id, caller.user_id))
    query = after_cursor(query, Space.created_at, Space.id, cursor).limit(limit + 1)
    async with session.begin():
        rows = list((await session.scalars(query)).all())
    return page_of(rows, limit, lambda s: (s.created_at, s.id))


async def get_space(session: AsyncSession, caller: Caller, space_id: uuid.UUID) -> SpaceDetail:
    async with session.begin():
        space = await visible_space(session, caller, space_id)
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
    session: AsyncSession, caller: Caller, space_id: uuid.UUID, *, changes: dict[str, object]
) -> Space:
    async with session.begin():
        space = await _managed_space(session, caller, space_id)
        for field in ("name", "description"):
            if field in changes:
                setattr(space, field, changes[field])
    return space


async def add_member(
    session: AsyncSession,
    caller: Caller,
    space_id: uuid.UUID,
    user_id: uuid.UUID,
    meta: RequestMeta | None,
) -> None:
    async with session.begin():
        await _managed_space(session, caller, space_id)
        in_tenant = await session.scalar(
            select(TenantMembership.id).where(TenantMembership.user_id == user_id)
        )
        if in_tenant is None:
            raise NotFound("User not found.")
        if await session.scalar(select(_is_member(space_id, user_id))):
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
    session: AsyncSession,
    caller: Caller,
    space_id: uuid.UUID,
    user_id: uuid.UUID,
    meta: RequestMeta | None,
) -> None:
    """The space's coach or an ADMIN removes anyone but the owner; members may leave."""
    async with session.begin():
        space = await visible_space(session, caller, space_id)
        if user_id != caller.user_id and not can_manage(caller, space):
            raise Forbidden("Only the space's coach or an ADMIN can remove members.")
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
