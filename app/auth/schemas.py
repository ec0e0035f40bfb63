import uuid
from typing import Annotated

from pydantic import EmailStr, Field, StringConstraints

from app.schemas_common import RequestBody, ResponseBody

Password = Annotated[str, Field(min_length=8, max_length=256)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]


class RegisterIn(RequestBody):
    email: EmailStr
    password: Password
    name: Annotated[str, Field(min_length=1, max_length=200)]
    tenant_name: Annotated[str, Field(min_length=1, max_length=200)]
    tenant_slug: Slug | None = None


class LoginIn(RequestBody):
    email: EmailStr
    password: Annotated[str, Field(min_length=1, max_length=256)]
    # Which organisation to sign in to; defaults to the one the user joined first.
    tenant_id: uuid.UUID | None = None


class RefreshIn(RequestBody):
    refresh_token: Annotated[str, Field(min_length=10, max_length=512)]


class AcceptInvitationIn(RequestBody):
    token: Annotated[str, Field(min_length=10, max_length=512)]
    password: Password
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class TokenPairOut(ResponseBody):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    role: str
