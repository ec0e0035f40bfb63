"""Session events become notifications for coach and athlete, and emails: a booking's
carries an .ics invitation (METHOD:REQUEST), a cancellation's the cancellation of the same
event (METHOD:CANCEL), a reminder's none. Through the notifications worker's handler,
real PostgreSQL and the suite's SMTP server; invitations parsed with icalendar."""

import uuid
from datetime import UTC, datetime, timedelta, timezone
from email.message import Message

import asyncpg
import pytest
from icalendar import Calendar

from app.bookings.reminders import send_reminder
from app.calendar.ics import session_uid
from app.events.envelope import Envelope
from app.events.outbox import add_event
from app.infra.db import Database
from tests.factories import add_member, mails_to, next_mail, register_tenant
from tests.test_session_reminders import Club, insert_session, make_club
from workers.notifications import NotificationsHandler


@pytest.fixture
async def club(client) -> Club:
    return await make_club(client)


async def session_row(superuser_conn: asyncpg.Connection, session_id: uuid.UUID) -> asyncpg.Record:
    return await superuser_conn.fetchrow(
        "SELECT s.*, t.title, t.location FROM coaching_sessions s "
        "JOIN session_types t ON t.id = s.session_type_id WHERE s.id = $1",
        session_id,
    )


def payload_of(row: asyncpg.Record, **changes: object) -> dict:
    """The payload the booking service writes (docs: /work/notes/scheduling.md)."""
    return {
        "session_id": str(row["id"]),
        "coach_id": str(row["coach_id"]),
        "athlete_id": str(row["athlete_id"]),
        "session_type_id": str(row["session_type_id"]),
        "title": row["title"],
        "location": row["location"],
        "starts_at": row["starts_at"].isoformat(),
        "ends_at": row["ends_at"].isoformat(),
        "booked_by": str(row["athlete_id"]),
    } | changes


async def publish(db: Database, settings, tenant_id: uuid.UUID, event_type: str, payload) -> None:
    """Write the event as a service does and hand it to the notifications worker."""
    async with db.transaction(tenant_id) as session:
        event = add_event(
            session,
            tenant_id=tenant_id,
            event_type=event_type,
            aggregate_type="coaching_session",
            aggregate_id=payload["session_id"],
            payload=payload,
        )
    await NotificationsHandler(settings, db)(Envelope(event.id, tenant_id, event_type))


def calendar_part(message: Message) -> Message | None:
    parts = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    assert len(parts) <= 1
    return parts[0] if parts else None


def invitation_in(message: Message) -> tuple[str, Calendar]:
    """The mail's calendar part: its MIME method, and the calendar it holds."""
    part = calendar_part(message)
    assert part is not None, message.as_string()
    content = part.get_payload(decode=True)
    assert isinstance(content, bytes)
    return str(part.get_param("method")), Calendar.from_ical(content)


async def notifications_of(client, account) -> list[dict]:
    response = await client.get("/notifications", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_a_booked_session_mails_coach_and_athlete_an_invitation(
    client, settings, db, superuser_conn, club
):
    session_id = await insert_session(
        superuser_conn, club, starts_in=timedelta(days=3), title="Serve clinic"
    )
    row = await session_row(superuser_conn, session_id)

    await publish(db, settings, club.tenant_id, "session.scheduled", payload_of(row))

    for account in (club.coach, club.athlete):
        mail = await next_mail(account.email, "Session booked: Serve clinic")
        method, calendar = invitation_in(mail)
        assert method == "REQUEST"
        assert calendar["METHOD"] == "REQUEST"
        [event] = calendar.walk("VEVENT")
        assert str(event["UID"]) == session_uid(session_id) == f"{session_id}@courtside"
        assert event.decoded("DTSTART") == row["starts_at"].replace(microsecond=0)
        assert event.decoded("DTEND") == row["ends_at"].replace(microsecond=0)
        assert str(event["SUMMARY"]) == "Serve clinic"
        assert str(event["LOCATION"]) == "Court 1"
        assert str(event["ORGANIZER"]) == f"mailto:{club.coach.email}"
        assert str(event["ATTENDEE"]) == f"mailto:{club.athlete.email}"
        assert str(event["STATUS"]) == "CONFIRMED"
        assert event["SEQUENCE"] == 0
        [notification] = await notifications_of(client, account)
        assert notification["kind"] == "session.scheduled"
        assert notification["data"]["session_id"] == str(session_id)
        assert "Serve clinic" in notification["body"]


async def test_a_cancellation_mails_the_cancellation_of_the_same_event(
    client, settings, db, superuser_conn, club
):
    session_id = await insert_session(superuser_conn, club, starts_in=timedelta(days=2))
    row = await session_row(superuser_conn, session_id)
    await publish(db, settings, club.tenant_id, "session.scheduled", payload_of(row))
    booked = await next_mail(club.athlete.email, "Session booked")
    _, invitation = invitation_in(booked)

    await publish(
        db,
        settings,
        club.tenant_id,
        "session.cancelled",
        payload_of(row, cancelled_by=str(club.coach.user_id), reason="Rain"),
    )

    for account in (club.coach, club.athlete):
        mail = await next_mail(account.email, "Session cancelled")
        method, calendar = invitation_in(mail)
        assert method == "CANCEL"
        assert calendar["METHOD"] == "CANCEL"
        [event] = calendar.walk("VEVENT")
        [booked_event] = invitation.walk("VEVENT")
        assert str(event["UID"]) == str(booked_event["UID"]) == session_uid(session_id)
        assert event["SEQUENCE"] > booked_event["SEQUENCE"]
        assert str(event["STATUS"]) == "CANCELLED"
        assert event.decoded("DTSTART") == booked_event.decoded("DTSTART")
        kinds = [n["kind"] for n in await notifications_of(client, account)]
        assert sorted(kinds) == ["session.cancelled", "session.scheduled"]


async def test_a_reminder_notifies_both_in_app_and_by_mail_without_an_invitation(
    client, settings, db, superuser_conn, club
):
    session_id = await insert_session(
        superuser_conn, club, starts_in=timedelta(minutes=40), title="Footwork"
    )
    assert await send_reminder(db, club.tenant_id, session_id, "1h")
    event = await superuser_conn.fetchrow(
        "SELECT id, tenant_id, event_type FROM outbox_events "
        "WHERE event_type = 'session.reminder' AND aggregate_id = $1",
        str(session_id),
    )

    await NotificationsHandler(settings, db)(
        Envelope(event["id"], event["tenant_id"], event["event_type"])
    )

    for account in (club.coach, club.athlete):
        mail = await next_mail(account.email, "Reminder: Footwork in 1 hour")
        assert calendar_part(mail) is None
        [notification] = await notifications_of(client, account)
        assert notification["kind"] == "session.reminder"
        assert notification["title"] == "Reminder: Footwork in 1 hour"
        assert notification["data"]["session_id"] == str(session_id)


async def test_a_title_cannot_add_calendar_properties(settings, db, superuser_conn, club):
    title = "Lesson\r\nMETHOD:CANCEL\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:forged"
    session_id = await insert_session(
        superuser_conn, club, starts_in=timedelta(days=4), title="Volleys"
    )
    row = await session_row(superuser_conn, session_id)

    await publish(db, settings, club.tenant_id, "session.scheduled", payload_of(row, title=title))

    mail = await next_mail(club.athlete.email, "Session booked: Lesson METHOD:CANCEL")
    _, calendar = invitation_in(mail)
    assert calendar["METHOD"] == "REQUEST"
    [event] = calendar.walk("VEVENT")
    assert str(event["UID"]) == session_uid(session_id)
    assert str(event["SUMMARY"]).splitlines() == title.splitlines()


async def test_a_payload_naming_another_tenants_user_reaches_and_reveals_no_one(
    client, settings, db, superuser_conn, club
):
    """An outbox row can be written by anyone acting in the tenant (its own database
    role too): naming another tenant's coach must neither mail them nor put their
    address in the invitation."""
    other = await register_tenant(client)
    outsider = await add_member(client, other, "COACH")
    session_id = await insert_session(superuser_conn, club, starts_in=timedelta(days=5))
    row = await session_row(superuser_conn, session_id)
    seen = len(mails_to(outsider.email))

    await publish(
        db,
        settings,
        club.tenant_id,
        "session.scheduled",
        payload_of(row, coach_id=str(outsider.user_id)),
    )

    _, calendar = invitation_in(await next_mail(club.athlete.email, "Session booked"))
    assert outsider.email not in calendar.to_ical().decode()
    [event] = calendar.walk("VEVENT")
    assert "ORGANIZER" not in event
    assert len(mails_to(outsider.email)) == seen
    assert await notifications_of(client, outsider) == []


async def test_a_booking_with_times_in_another_offset_is_rendered_in_utc(
    settings, db, superuser_conn, club
):
    session_id = await insert_session(superuser_conn, club, starts_in=timedelta(days=6))
    row = await session_row(superuser_conn, session_id)
    at_plus_one = row["starts_at"].astimezone(timezone(timedelta(hours=1)))

    await publish(
        db,
        settings,
        club.tenant_id,
        "session.scheduled",
        payload_of(row, starts_at=at_plus_one.isoformat()),
    )

    _, calendar = invitation_in(await next_mail(club.athlete.email, "Session booked"))
    [event] = calendar.walk("VEVENT")
    assert event["DTSTART"].to_ical().endswith(b"Z")
    assert event.decoded("DTSTART") == row["starts_at"].replace(microsecond=0)


async def _deliver(settings, db, superuser_conn, session_id: str, event_type: str) -> None:
    """Hand the session's outbox event of `event_type` to the notifications worker."""
    row = await superuser_conn.fetchrow(
        "SELECT id, tenant_id FROM outbox_events WHERE aggregate_id = $1 AND event_type = $2",
        session_id,
        event_type,
    )
    assert row is not None, event_type
    await NotificationsHandler(settings, db)(Envelope(row["id"], row["tenant_id"], event_type))


async def test_a_booking_and_its_cancellation_over_the_api_reach_both_calendars(
    client, settings, db, superuser_conn, club
):
    """The booking service's own events: the invitation and the cancellation describe
    the session it booked."""
    coach, athlete = club.coach, club.athlete
    offered = await client.post(
        "/scheduling/availability",
        headers=coach.headers,
        json={
            "time_zone": "UTC",
            "rules": [{"weekday": d, "start": "08:00", "end": "18:00"} for d in range(7)],
        },
    )
    assert offered.status_code == 201, offered.text
    created = await client.post(
        "/scheduling/session-types",
        headers=coach.headers,
        json={"title": "Return drills", "duration_minutes": 45, "location": "Court 4"},
    )
    assert created.status_code == 201, created.text
    start = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0) + timedelta(
        days=3
    )
    booked = await client.post(
        "/scheduling/sessions/book",
        headers=athlete.headers,
        json={
            "coach_id": str(coach.user_id),
            "session_type_id": created.json()["id"],
            "start": start.isoformat(),
        },
    )
    assert booked.status_code == 201, booked.text
    session_id = booked.json()["id"]

    await _deliver(settings, db, superuser_conn, session_id, "session.scheduled")

    for account in (coach, athlete):
        method, calendar = invitation_in(await next_mail(account.email, "Return drills"))
        assert method == "REQUEST"
        [event] = calendar.walk("VEVENT")
        assert str(event["UID"]) == f"{session_id}@courtside"
        assert event.decoded("DTSTART") == start
        assert event.decoded("DTEND") == start + timedelta(minutes=45)
        assert str(event["LOCATION"]) == "Court 4"
        assert str(event["ORGANIZER"]) == f"mailto:{coach.email}"
        assert str(event["ATTENDEE"]) == f"mailto:{athlete.email}"

    cancelled = await client.post(
        f"/scheduling/sessions/{session_id}/cancel", headers=coach.headers, json={"reason": "Ill"}
    )
    assert cancelled.status_code == 200, cancelled.text
    await _deliver(settings, db, superuser_conn, session_id, "session.cancelled")

    for account in (coach, athlete):
        method, calendar = invitation_in(await next_mail(account.email, "Session cancelled"))
        assert method == "CANCEL"
        [event] = calendar.walk("VEVENT")
        assert str(event["UID"]) == f"{session_id}@courtside"
        assert str(event["STATUS"]) == "CANCELLED"
