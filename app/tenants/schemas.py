import uuid
from datetime import datetime

from pydantic import EmailStr

from app.infra.schemas import RequestBody, ResponseBody
from app.tenants.models import Role


class TenantOut(ResponseBody):
    id: uuid.UUID
    slug: str
    name: str
    suspended: bool
    created_at: datetime


class InviteIn(RequestBody):
    email: EmailStr
    role: Role


class InvitationOut(ResponseBody):
    id: uuid.UUID
    email: str
    role: Role
    expires_at: datetime
    # The token is mailed to the invitee only. False: the SMTP server didn't take the mail;
    # POST …/invitations/{id}/resend sends it again with a new token.
    email_sent: bool


class MemberOut(ResponseBody):
    user_id: uuid.UUID
    name: str
    email: str
    role: Role
    joined_at: datetime


class RoleChangeIn(RequestBody):
    role: Role
