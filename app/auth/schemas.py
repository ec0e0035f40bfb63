import uuid
from typing import Annotated

from pydantic import EmailStr, Field, StringConstraints

from app.infra.schemas import RequestBody, ResponseBody

Password = Annotated[str, Field(min_length=8, max_length=256)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]


class RegisterIn(RequestBody):
    """Step one of sign-up: nothing is created until the address is proven (step two)."""

    email: EmailStr
    name: Annotated[str, Field(min_length=1, max_length=200)]
    tenant_name: Annotated[str, Field(min_length=1, max_length=200)]
    tenant_slug: Slug | None = None


# A mailed, signed token: a sign-up one carries the form, so it is longer than the others.
MailedToken = Annotated[str, Field(min_length=10, max_length=4096)]


class VerifyEmailIn(RequestBody):
    """Step two: the token from the sign-up mail, and the password the user chooses."""

    token: MailedToken
    password: Password


class ForgotPasswordIn(RequestBody):
    email: EmailStr


class ResetPasswordIn(RequestBody):
    token: MailedToken
    password: Password


class AcceptedOut(ResponseBody):
    """The same answer whatever the address: what happens next is told by mail."""

    detail: str


class LoginIn(RequestBody):
    email: EmailStr
    password: Annotated[str, Field(min_length=1, max_length=256)]
    # Which organisation to sign in to; defaults to the one the user joined first.
    tenant_id: uuid.UUID | None = None


class RefreshIn(RequestBody):
    refresh_token: Annotated[str, Field(min_length=10, max_length=512)]


class AcceptInvitationIn(RequestBody):
    """A new account chooses its password here; an existing one signs in instead and sends
    its access token (then no password)."""

    token: Annotated[str, Field(min_length=10, max_length=512)]
    password: Password | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class TokenPairOut(ResponseBody):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    role: str
