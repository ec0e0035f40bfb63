from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth import service
from app.auth.caller import Caller
from app.auth.schemas import (
    AcceptedOut,
    AcceptInvitationIn,
    ForgotPasswordIn,
    LoginIn,
    RefreshIn,
    RegisterIn,
    ResetPasswordIn,
    TokenPairOut,
    VerifyEmailIn,
)
from app.deps import (
    DatabaseDep,
    MetaDep,
    ResourcesDep,
    SettingsDep,
    current_caller,
    ip_rate_limit,
)
from app.infra.mail import Mail, deliver
from app.resources import Resources

router = APIRouter(prefix="/auth", tags=["auth"], dependencies=[Depends(ip_rate_limit)])
_optional_bearer = HTTPBearer(auto_error=False, description="Access token from /auth/login")

SIGN_UP_SENT = "Check your inbox: we sent a link to finish signing up."
RESET_SENT = "If this address has an account, we sent it a link to reset the password."


async def _mail_later(resources: Resources, background: BackgroundTasks, mail: Mail | None) -> None:
    """Send after the response, so its time and any SMTP failure don't show in the answer
    (the per-address cap: service.may_send_mail)."""
    settings = resources.settings
    if mail is not None and await service.may_send_mail(resources.limiter, settings, mail):
        background.add_task(deliver, settings, mail)


@router.post("/register", status_code=status.HTTP_202_ACCEPTED, response_model=AcceptedOut)
async def register(
    body: RegisterIn,
    db: DatabaseDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    background: BackgroundTasks,
) -> AcceptedOut:
    """Start creating an organisation (tenant) and its first ADMIN: a link to finish is
    mailed to the address. The answer is the same whether or not the address has an
    account (its owner is told by mail)."""
    mail = await service.register(db, body, settings=settings)
    await _mail_later(resources, background, mail)
    return AcceptedOut(detail=SIGN_UP_SENT)


@router.post("/register/verify", status_code=status.HTTP_201_CREATED, response_model=TokenPairOut)
async def verify_email(
    body: VerifyEmailIn, db: DatabaseDep, settings: SettingsDep, meta: MetaDep
) -> TokenPairOut:
    """Finish signing up with the mailed token and a password; signs the new ADMIN in."""
    pair = await service.verify_email(db, body, meta, settings=settings)
    return TokenPairOut.model_validate(pair)


@router.post("/password/forgot", status_code=status.HTTP_202_ACCEPTED, response_model=AcceptedOut)
async def forgot_password(
    body: ForgotPasswordIn,
    db: DatabaseDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    background: BackgroundTasks,
) -> AcceptedOut:
    """Mail a password-reset link if the address has an account; the same answer if not."""
    mail = await service.forgot_password(db, body.email, settings=settings)
    await _mail_later(resources, background, mail)
    return AcceptedOut(detail=RESET_SENT)


@router.post("/password/reset", status_code=status.HTTP_204_NO_CONTENT)
async def reset_password(
    body: ResetPasswordIn,
    db: DatabaseDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    meta: MetaDep,
) -> Response:
    """Set a new password with the mailed token (once); earlier sessions stop refreshing."""
    await service.reset_password(
        db, body, meta, settings=settings, throttle=resources.login_throttle
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/login", response_model=TokenPairOut)
async def login(
    body: LoginIn,
    db: DatabaseDep,
    settings: SettingsDep,
    resources: ResourcesDep,
    meta: MetaDep,
) -> TokenPairOut:
    pair = await service.login(db, body, meta, settings=settings, throttle=resources.login_throttle)
    return TokenPairOut.model_validate(pair)


@router.post("/refresh", response_model=TokenPairOut)
async def refresh(
    body: RefreshIn, db: DatabaseDep, settings: SettingsDep, meta: MetaDep
) -> TokenPairOut:
    """Exchange a refresh token for a new pair; the old refresh token stops working."""
    pair = await service.refresh(db, body.refresh_token, meta, settings=settings)
    return TokenPairOut.model_validate(pair)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    body: RefreshIn, db: DatabaseDep, settings: SettingsDep, resources: ResourcesDep
) -> Response:
    ended = await service.logout(db, body.refresh_token, settings=settings)
    if ended is not None:  # other replicas notice within MEMBERSHIP_CACHE_SECONDS
        resources.member_sessions.forget(ended.tenant_id, ended.user_id, ended.session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def optional_caller(
    resources: ResourcesDep,
    meta: MetaDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_optional_bearer)],
) -> Caller | None:
    """The signed-in caller if a bearer token came with the request (checked as usual)."""
    if credentials is None:
        return None
    return await current_caller(resources, meta, credentials)


@router.post(
    "/invitations/accept", status_code=status.HTTP_201_CREATED, response_model=TokenPairOut
)
async def accept_invitation(
    body: AcceptInvitationIn,
    db: DatabaseDep,
    settings: SettingsDep,
    meta: MetaDep,
    caller: Annotated[Caller | None, Depends(optional_caller)],
) -> TokenPairOut:
    """Join an organisation with the mailed invitation token: as the signed-in account the
    invitation is addressed to (bearer token, no password), or as a new account choosing
    its password."""
    pair = await service.accept_invitation(db, caller, body, meta, settings=settings)
    return TokenPairOut.model_validate(pair)
