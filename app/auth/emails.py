"""The mails that prove someone reads an address: sign-up, password reset, invitation."""

from urllib.parse import urlencode

from app.infra.mail import Mail
from app.infra.settings import Settings


def _link(settings: Settings, page: str, token: str) -> str:
    return f"{settings.public_url.rstrip('/')}/{page}?{urlencode({'token': token})}"


def sign_up(settings: Settings, to: str, tenant_name: str, token: str) -> Mail:
    hours = settings.email_verification_ttl_seconds // 3600
    return Mail(
        to=to,
        subject="Confirm your email to finish signing up",
        body=(
            f"Someone asked to create the Courtside organisation “{tenant_name}” with this "
            "email address. If it was you, open this link and choose your password "
            f"(it works for {hours} hours):\n\n{_link(settings, 'verify-email', token)}\n\n"
            "If it wasn't you, ignore this mail: nothing is created without it."
        ),
        kind="sign_up",
    )


def already_registered(settings: Settings, to: str) -> Mail:
    base = settings.public_url.rstrip("/")
    return Mail(
        to=to,
        subject="You already have a Courtside account",
        body=(
            "Someone asked to create a Courtside organisation with this email address, which "
            f"already has an account. Sign in at {base}/login, or if you forgot your "
            f"password, reset it at {base}/forgot-password.\n\n"
            "If it wasn't you, ignore this mail."
        ),
        kind="already_registered",
    )


def password_reset(settings: Settings, to: str, token: str) -> Mail:
    minutes = settings.password_reset_ttl_seconds // 60
    return Mail(
        to=to,
        subject="Reset your Courtside password",
        body=(
            "Open this link to choose a new password (it works once, for "
            f"{minutes} minutes):\n\n{_link(settings, 'reset-password', token)}\n\n"
            "If you didn't ask for it, ignore this mail: your password stays as it is."
        ),
        kind="password_reset",
    )


def invitation(settings: Settings, to: str, tenant_name: str, role: str, token: str) -> Mail:
    return Mail(
        to=to,
        subject=f"You're invited to {tenant_name} on Courtside",
        body=(
            f"You're invited to join “{tenant_name}” on Courtside as {role}. Open this link "
            "to accept; if you already have a Courtside account, sign in with it first:\n\n"
            f"{_link(settings, 'accept-invitation', token)}"
        ),
        kind="invitation",
    )
