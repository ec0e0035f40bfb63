from fastapi import APIRouter, Depends, Response, status

from app.auth import service
from app.auth.schemas import AcceptInvitationIn, LoginIn, RefreshIn, RegisterIn, TokenPairOut
from app.deps import MetaDep, ResourcesDep, ip_rate_limit

router = APIRouter(prefix="/auth", tags=["auth"], dependencies=[Depends(ip_rate_limit)])


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=TokenPairOut)
async def register(body: RegisterIn, resources: ResourcesDep, meta: MetaDep) -> TokenPairOut:
    """Create an organisation (tenant) and its first ADMIN."""
    pair = await service.register(resources.db, resources.settings, body, meta)
    return TokenPairOut.model_validate(pair)


@router.post("/login", response_model=TokenPairOut)
async def login(body: LoginIn, resources: ResourcesDep, meta: MetaDep) -> TokenPairOut:
    pair = await service.login(
        resources.db, resources.settings, resources.login_throttle, body, meta
    )
    return TokenPairOut.model_validate(pair)


@router.post("/refresh", response_model=TokenPairOut)
async def refresh(body: RefreshIn, resources: ResourcesDep, meta: MetaDep) -> TokenPairOut:
    """Exchange a refresh token for a new pair; the old refresh token stops working."""
    pair = await service.refresh(resources.db, resources.settings, body.refresh_token, meta)
    return TokenPairOut.model_validate(pair)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshIn, resources: ResourcesDep) -> Response:
    await service.logout(resources.db, resources.settings, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/invitations/accept", status_code=status.HTTP_201_CREATED, response_model=TokenPairOut
)
async def accept_invitation(
    body: AcceptInvitationIn, resources: ResourcesDep, meta: MetaDep
) -> TokenPairOut:
    pair = await service.accept_invitation(resources.db, resources.settings, body, meta)
    return TokenPairOut.model_validate(pair)
