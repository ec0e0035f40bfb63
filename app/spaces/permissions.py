"""Who may see and change a space.

ADMIN sees and manages every space of the tenant; a COACH creates spaces and manages the
ones they own; everyone else sees only the spaces they are a member of. A space the caller
may not see does not exist for them (404), so ids never confirm anything across spaces.
"""

import uuid
from typing import Any

from sqlalchemy import Exists, Select, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.caller import Caller
from app.infra.errors import Forbidden, NotFound
from app.spaces.models import Space, SpaceMember
from app.tenants.models import Role


def sees_every_space(caller: Caller) -> bool:
    """An ADMIN sees every space of the tenant, member or not."""
    return caller.role == Role.ADMIN


def is_member(space_id: object, user_id: uuid.UUID) -> Exists:
    """SQL: `user_id` is a member of `space_id` (a value or a column)."""
    return exists().where(SpaceMember.space_id == space_id, SpaceMember.user_id == user_id)


def only_visible_spaces[Query: Select[Any]](query: Query, caller: Caller) -> Query:
    """`query` over spaces, narrowed to the ones the caller may see."""
    if sees_every_space(caller):
        return query
    return query.where(is_member(Space.id, caller.user_id))


async def visible_space(session: AsyncSession, caller: Caller, space_id: uuid.UUID) -> Space:
    """The space, if the caller may see it; else NotFound. A step: runs in the
    transaction it is given."""
    space = await session.scalar(
        only_visible_spaces(select(Space).where(Space.id == space_id), caller)
    )
    if space is None:
        raise NotFound("Space not found.")
    return space


def can_manage(caller: Caller, space: Space) -> bool:
    """An ADMIN, or the COACH who owns the space."""
    return caller.role == Role.ADMIN or (
        caller.role == Role.COACH and space.owner_id == caller.user_id
    )


def check_can_create_space(caller: Caller) -> None:
    if caller.role not in (Role.ADMIN, Role.COACH):
        raise Forbidden("Only coaches and admins create spaces.")


async def managed_space(session: AsyncSession, caller: Caller, space_id: uuid.UUID) -> Space:
    """The space, if the caller may see and change it (NotFound, then Forbidden). A step."""
    space = await visible_space(session, caller, space_id)
    if not can_manage(caller, space):
        raise Forbidden("Only the space's coach or an ADMIN can change it.")
    return space


def check_can_remove_member(caller: Caller, space: Space, user_id: uuid.UUID) -> None:
    """The space's coach or an ADMIN removes others; any member may leave."""
    if user_id != caller.user_id and not can_manage(caller, space):
        raise Forbidden("Only the space's coach or an ADMIN can remove members.")
