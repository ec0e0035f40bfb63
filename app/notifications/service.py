"""Who hears about what: turning events into in-app notifications and emails.

`notify` is a step of the notifications worker's idempotent transaction (docs/architecture.md,
point 4); the other public functions are units of work of their own. Who may read which
notification: app/notifications/permissions.py."""

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.caller import Caller
from app.auth.models import User
from app.calendar.service import INVITATION_EVENTS, session_invitation
from app.events.models import OutboxEvent
from app.infra import mail
from app.infra.db import Database
from app.infra.errors import NotFound
from app.infra.pagination import Page, after_cursor, page_of
from app.infra.settings import Settings
from app.notifications import permissions
from app.notifications.models import Notification
from app.spaces.models import SpaceMember

MESSAGES = {
    "post.created": ("New post in your space", "{actor} posted in a space you belong to."),
    "comment.created": ("New comment on your post", "Someone commented on your post."),
    "media.comment.created": ("New comment on your video", "Someone commented on your video."),
    "session.scheduled": ("Session booked: {title}", "{title} is booked for {when}."),
    "session.cancelled": ("Session cancelled: {title}", "{title} on {when} was cancelled."),
    "session.reminder": ("Reminder: {title} in {lead}", "{title} starts in {lead}, at {when}."),
}
SESSION_EVENTS = ("session.scheduled", "session.cancelled", "session.reminder")
# A reminder's payload "kind", as its mail says it.
REMINDER_LEADS = {"24h": "24 hours", "1h": "1 hour"}
_TITLE_LENGTH = 200  # notifications.title


def _session_fields(payload: Mapping[str, Any]) -> dict[str, str]:
    """What a session event's message says: its title, when (UTC; the attached .ics shows
    it in the reader's own zone) and, for a reminder, how soon."""
    when = str(payload.get("starts_at", ""))
    try:
        when = datetime.fromisoformat(when).astimezone(UTC).strftime("%a %d %b %Y, %H:%M UTC")
    except ValueError:
        pass
    kind = str(payload.get("kind", ""))
    return {
        # One line: it goes into the mail's Subject, where a line break is refused.
        "title": " ".join(str(payload.get("title") or "").split()) or "A coaching session",
        "when": when,
        "lead": REMINDER_LEADS.get(kind, kind),
    }


def message_for(event_type: str, payload: Mapping[str, Any]) -> tuple[str, str]:
    """The notification's title and body for an event."""
    title, body = MESSAGES[event_type]
    fields = _session_fields(payload) if event_type in SESSION_EVENTS else {"actor": "A member"}
    return title.format_map(fields)[:_TITLE_LENGTH], body.format_map(fields)


async def recipients_for(
    session: AsyncSession, event_type: str, payload: dict[str, Any]
) -> list[uuid.UUID]:
    """The users an event concerns (never the person who caused it). A step: runs in the
    transaction it is given."""
    actor = payload.get("author_id")
    if event_type == "post.created":
        rows = await session.scalars(
            select(SpaceMember.user_id).where(
                SpaceMember.space_id == uuid.UUID(payload["space_id"])
            )
        )
        return [u for u in rows if str(u) != actor]
    if event_type == "comment.created":
        author = payload["post_author_id"]
        return [] if author == actor else [uuid.UUID(author)]
    if event_type == "media.comment.created":
        owner = payload["owner_id"]
        return [] if owner == actor else [uuid.UUID(owner)]
    if event_type in SESSION_EVENTS:
        return list(
            dict.fromkeys(
                uuid.UUID(payload[k]) for k in ("coach_id", "athlete_id") if payload.get(k)
            )
        )
    return []


async def notify(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    event_id: uuid.UUID,
    event_type: str,
    payload: dict[str, Any],
) -> int:
    """Write the event's notifications; returns how many. A step: runs inside the worker's
    transaction (the one that records the event as processed) and never begins or commits."""
    if event_type not in MESSAGES:
        raise ValueError(f"no notification for event type {event_type!r}")
    recipients = await recipients_for(session, event_type, payload)
    if not recipients:
        return 0
    rows = await session.execute(
        select(User.id, User.email_notifications).where(User.id.in_(recipients))
    )
    wants_email = {user_id: wants for user_id, wants in rows.all()}
    title, body = message_for(event_type, payload)
    for user_id in recipients:
        if user_id not in wants_email:  # not (or no longer) a member of this tenant
            continue
        session.add(
            Notification(
                tenant_id=tenant_id,
                user_id=user_id,
                event_id=event_id,
                kind=event_type,
                title=title,
                body=body,
                data={k: v for k, v in payload.items() if k.endswith("_id")},
                email_pending=wants_email[user_id],
            )
        )
    return len(recipients)


async def send_pending_emails(
    db: Database, settings: Settings, *, tenant_id: uuid.UUID, event_id: uuid.UUID
) -> int:
    """Email the event's notifications not yet emailed, in the event's tenant (at least
    once: a crash between sending and marking may send one twice, never zero times).
    Mails about a booked or cancelled session carry its .ics (METHOD REQUEST or CANCEL)."""
    async with db.transaction(tenant_id) as session:
        rows = (
            await session.execute(
                select(Notification, User.email)
                .join(User, User.id == Notification.user_id)
                .where(Notification.event_id == event_id, Notification.email_pending)
            )
        ).all()
        attachments = await _attachments(session, event_id) if rows else ()
    for notification, email in rows:
        await mail.send(
            settings,
            mail.Mail(
                to=email,
                subject=notification.title,
                body=notification.body,
                kind=notification.kind,
                attachments=attachments,
            ),
        )
        # One transaction per mail sent: a later failure leaves the earlier ones marked.
        async with db.transaction(tenant_id) as session:
            await session.execute(
                update(Notification)
                .where(Notification.id == notification.id)
                .values(email_pending=False)
            )
    return len(rows)


async def _attachments(session: AsyncSession, event_id: uuid.UUID) -> tuple[mail.Attachment, ...]:
    """The calendar invitation of a session event's mails, from the event's outbox row."""
    event = await session.get(OutboxEvent, event_id)
    if event is None or event.event_type not in INVITATION_EVENTS:
        return ()
    invitation = await session_invitation(
        session, event.event_type, event.payload, stamp=event.created_at
    )
    if invitation is None:
        return ()
    method, content = invitation
    return (
        mail.Attachment(
            filename="invite.ics" if method == "REQUEST" else "cancel.ics",
            content_type="text/calendar",
            content=content,
            params={"method": str(method), "charset": "utf-8"},
        ),
    )


async def list_notifications(
    db: Database, caller: Caller, *, unread_only: bool, limit: int, cursor: str | None
) -> Page[Notification]:
    """The caller's notifications, newest first (only unread ones if `unread_only`)."""
    query = select(Notification).where(permissions.own_notifications(caller))
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    query = after_cursor(query, Notification.created_at, Notification.id, cursor)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        rows = list((await session.scalars(query.limit(limit + 1))).all())
    return page_of(rows, limit, lambda n: (n.created_at, n.id))


async def mark_read(db: Database, caller: Caller, notification_id: uuid.UUID) -> Notification:
    """Mark one of the caller's notifications read (once: a second call keeps the first time)."""
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        notification = await session.scalar(
            select(Notification).where(
                Notification.id == notification_id, permissions.own_notifications(caller)
            )
        )
        if notification is None:
            raise NotFound("Notification not found.")
        if notification.read_at is None:
            notification.read_at = datetime.now(UTC)
    return notification
