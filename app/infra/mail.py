"""Sending one mail over SMTP: the boundary where a mail provider plugs in."""

from dataclasses import dataclass, field
from email.message import EmailMessage

import aiosmtplib
import structlog

from app.infra.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # "maintype/subtype"
    content: bytes
    # More Content-Type parameters (a calendar invitation's {"method": "REQUEST"}).
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str
    # What the mail is for ("invitation", "password_reset", …): logged instead of the body,
    # which may carry a token.
    kind: str
    attachments: tuple[Attachment, ...] = ()


async def send(settings: Settings, mail: Mail) -> None:
    """Hand the mail to the SMTP server; raises if it doesn't take it."""
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = mail.to
    message["Subject"] = mail.subject
    # 8bit, not quoted-printable: links stay whole and copyable wherever the mail is read.
    message.set_content(mail.body, cte="8bit")
    for attachment in mail.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(
            attachment.content,
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename,
            params=attachment.params,
        )
    await aiosmtplib.send(message, hostname=settings.smtp_host, port=settings.smtp_port, timeout=10)


async def deliver(settings: Settings, mail: Mail) -> bool:
    """Send, logging a failure instead of raising; returns whether the server took it."""
    try:
        await send(settings, mail)
    except (aiosmtplib.SMTPException, OSError) as exc:
        log.warning("mail_not_sent", kind=mail.kind, error=type(exc).__name__)
        return False
    log.info("mail_sent", kind=mail.kind)
    return True
