"""HTTP for a tenant, its invitations and members; who may do what is decided by the
service (app/tenants/permissions.py)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response, status

from app.deps import CallerDep, DatabaseDep, MetaDep, ResourcesDep, SettingsDep
from app.infra.schemas import PageOut
from app.tenants import service
from app.tenants.models import Role
from app.tenants.schemas import InvitationOut, InviteIn, MemberOut, RoleChangeIn, TenantOut

router = APIRouter(prefix="/tenants", tags=["tenants"])


@router.get("/{tenant_id}", response_model=TenantOut)
async def get_tenant(tenant_id: uuid.UUID, caller: CallerDep, db: DatabaseDep) -> TenantOut:
    return TenantOut.model_validate(await service.get_tenant(db, caller, tenant_id))


@router.post(
    "/{tenant_id}/invite", status_code=status.HTTP_201_CREATED, response_model=InvitationOut
)
async def invite(
    tenant_id: uuid.UUID,
    body: InviteIn,
    caller: CallerDep,
    db: DatabaseDep,
    settings: SettingsDep,
    meta: MetaDep,
) -> InvitationOut:
    """Invite someone by email (ADMIN only). The single-use, expiring token is mailed to
    them and never returned here."""
    sent = await service.invite(
        db, caller, tenant_id, body.email, body.role, meta, settings=settings
    )
    return _invitation_out(sent)


@router.post(
    "/{tenant_id}/invitations/{invitation_id}/resend",
    response_model=InvitationOut,
)
async def resend_invitation(
    tenant_id: uuid.UUID,
    invitation_id: uuid.UUID,
    caller: CallerDep,
    db: DatabaseDep,
    settings: SettingsDep,
    meta: MetaDep,
) -> InvitationOut:
    """Mail an open invitation again with a new token (ADMIN only); the old token dies."""
    sent = await service.resend_invitation(
        db, caller, tenant_id, invitation_id, meta, settings=settings
    )
    return _invitation_out(sent)


def _invitation_out(sent: service.InvitationSent) -> InvitationOut:
    invitation = sent.invitation
    return InvitationOut(
        id=invitation.id,
        email=invitation.email,
        role=Role(invitation.role),
        expires_at=invitation.expires_at,
        email_sent=sent.email_sent,
    )


@router.get("/{tenant_id}/members", response_model=PageOut[MemberOut])
async def list_members(
    tenant_id: uuid.UUID,
    caller: CallerDep,
    db: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> PageOut[MemberOut]:
    page = await service.list_members(db, caller, tenant_id, limit=limit, cursor=cursor)
    return PageOut[MemberOut](
        items=[MemberOut.model_validate(m) for m in page.items], next_cursor=page.next_cursor
    )


@router.patch("/{tenant_id}/members/{user_id}", response_model=MemberOut)
async def change_role(
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    body: RoleChangeIn,
    caller: CallerDep,
    db: DatabaseDep,
    resources: ResourcesDep,
    meta: MetaDep,
) -> MemberOut:
    """Change a member's role (ADMIN only; the last ADMIN cannot be demoted). The member's
    sessions end: they sign in again under the new role."""
    member = await service.change_role(db, caller, tenant_id, user_id, body.role, meta)
    # This process's cache of the member's sessions; other replicas notice within
    # MEMBERSHIP_CACHE_SECONDS.
    resources.member_sessions.forget(tenant_id, user_id)
    return MemberOut.model_validate(member)


@router.delete("/{tenant_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_member(
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    caller: CallerDep,
    db: DatabaseDep,
    resources: ResourcesDep,
    meta: MetaDep,
) -> Response:
    """Remove a member (ADMIN only; the last ADMIN cannot be removed). Their sessions end
    and their access tokens stop working within MEMBERSHIP_CACHE_SECONDS."""
    await service.remove_member(db, caller, tenant_id, user_id, meta)
    resources.member_sessions.forget(tenant_id, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/{tenant_id}/booking-cancellation-cutoff")
async def set_cancellation_cutoff(
    tenant_id: uuid.UUID,
    minutes: Annotated[
        int | None,
        Body(
            embed=True,
            ge=0,
            le=60 * 24 * 60,
            description="Athletes may cancel until this long before a session; null: the "
            "platform default.",
        ),
    ],
    caller: CallerDep,
    db: DatabaseDep,
    meta: MetaDep,
) -> dict[str, int | None]:
    """The organisation's cancellation cutoff for athletes (ADMIN only)."""
    return {"minutes": await service.set_cancellation_cutoff(db, caller, tenant_id, minutes, meta)}
