"""Who may change what a coach offers.

A COACH manages their own session types and availability; ADMIN and SCHEDULER manage any
coach's. Every member of the tenant reads them (athletes book from them). Rows of another
tenant are invisible under RLS, so their ids give 404; a coach id that is not a COACH of
the tenant is an invalid value (422), since whom to give hours to is the caller's input.
"""

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.caller import Caller
from app.infra.errors import Forbidden, ValidationFailed
from app.tenants.models import Role, TenantMembership

_MANAGERS = (Role.ADMIN, Role.SCHEDULER)


def check_can_manage_coach(caller: Caller, coach_id: uuid.UUID) -> None:
    """The coach themselves, an ADMIN or a SCHEDULER; else Forbidden."""
    if caller.has_role(*_MANAGERS):
        return
    if caller.role == Role.COACH and caller.user_id == coach_id:
        return
    if caller.role == Role.COACH:
        raise Forbidden("A coach manages only their own session types and availability.")
    raise Forbidden("Only the coach, an ADMIN or a SCHEDULER can change this.")


async def check_is_coach(session: AsyncSession, coach_id: uuid.UUID) -> None:
    """`coach_id` is a COACH member of the caller's tenant (ValidationFailed otherwise). A
    step: runs in the transaction it is given, whose tenant RLS applies."""
    role = await session.scalar(
        select(TenantMembership.role).where(TenantMembership.user_id == coach_id)
    )
    if role != Role.COACH:
        raise ValidationFailed("coach_id is not a coach of this organisation.")


async def check_can_offer_for(session: AsyncSession, caller: Caller, coach_id: uuid.UUID) -> None:
    """The caller may manage `coach_id`, who is a coach of the tenant. A step."""
    check_can_manage_coach(caller, coach_id)
    await check_is_coach(session, coach_id)
