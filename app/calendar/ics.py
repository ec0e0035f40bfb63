"""iCalendar (RFC 5545) for coaching sessions: one VEVENT per session, whole calendars for
an invitation (METHOD:REQUEST), a cancellation (METHOD:CANCEL) and a subscribed feed (no
METHOD). Rendering only: callers gather the sessions and people.

A session's UID is its id at UID_DOMAIN, the same in every invitation, cancellation and
feed, so calendar apps update one event instead of adding another. The icalendar library
escapes every value, so a title or location cannot add properties of its own.
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from icalendar import Calendar, Event, vCalAddress, vDuration, vText

# Stable whatever the deployment's URLs: a changed UID would duplicate every event.
UID_DOMAIN = "courtside"
PRODID = "-//Courtside//Coaching sessions//EN"
FEED_NAME = "Courtside sessions"
# How often subscribers are asked to refresh the feed (many poll less often anyway).
FEED_REFRESH = timedelta(hours=1)


class Method(StrEnum):
    REQUEST = "REQUEST"
    CANCEL = "CANCEL"


@dataclass(frozen=True)
class Person:
    email: str
    name: str | None = None


@dataclass(frozen=True)
class SessionEntry:
    """What one VEVENT says about a session."""

    session_id: uuid.UUID
    title: str
    starts_at: datetime
    ends_at: datetime
    location: str | None
    coach: Person | None
    athlete: Person | None
    cancelled: bool = False

    @property
    def sequence(self) -> int:
        # A session is booked once and cancelled at most once (a reschedule is a new
        # session): the cancellation is its only revision.
        return 1 if self.cancelled else 0


def session_uid(session_id: uuid.UUID) -> str:
    return f"{session_id}@{UID_DOMAIN}"


def _address(person: Person, **params: str) -> vCalAddress:
    address = vCalAddress(f"mailto:{person.email}")
    if person.name:
        address.params["CN"] = vText(person.name)
    for key, value in params.items():
        address.params[key] = value
    return address


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("session times must be timezone-aware")
    return moment.astimezone(UTC)


def session_event(entry: SessionEntry, *, stamp: datetime) -> Event:
    """The session's VEVENT; `stamp` (DTSTAMP) is when this copy of it was made."""
    event = Event()
    event.add("uid", session_uid(entry.session_id))
    event.add("dtstamp", _utc(stamp))
    event.add("dtstart", _utc(entry.starts_at))
    event.add("dtend", _utc(entry.ends_at))
    event.add("summary", entry.title)
    if entry.location:
        event.add("location", entry.location)
    if entry.coach is not None:
        event.add("organizer", _address(entry.coach))
    if entry.athlete is not None:
        event.add(
            "attendee",
            _address(entry.athlete, ROLE="REQ-PARTICIPANT", PARTSTAT="ACCEPTED"),
        )
    event.add("sequence", entry.sequence)
    event.add("status", "CANCELLED" if entry.cancelled else "CONFIRMED")
    return event


def _calendar(method: Method | None) -> Calendar:
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    if method is not None:
        calendar.add("method", str(method))
    return calendar


def invitation(entry: SessionEntry, *, stamp: datetime) -> tuple[Method, bytes]:
    """An iTIP message for one session (RFC 5546): REQUEST while it is on, CANCEL once it
    is cancelled; returns the method (for the MIME type) and the calendar."""
    method = Method.CANCEL if entry.cancelled else Method.REQUEST
    calendar = _calendar(method)
    calendar.add_component(session_event(entry, stamp=stamp))
    return method, bytes(calendar.to_ical())


def feed(entries: Iterable[SessionEntry], *, stamp: datetime) -> bytes:
    """A subscribable calendar of sessions (no METHOD: it is published, not sent)."""
    calendar = _calendar(None)
    calendar.add("x-wr-calname", FEED_NAME)
    calendar.add("refresh-interval", FEED_REFRESH, parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", vDuration(FEED_REFRESH))  # an X- property: typed here
    for entry in entries:
        calendar.add_component(session_event(entry, stamp=stamp))
    return bytes(calendar.to_ical())
