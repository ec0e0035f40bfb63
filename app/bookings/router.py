"""HTTP for holds, bookings, cancellations and reschedules, the sessions list and a coach's
open slots (under /scheduling, beside app/scheduling's session types and availability)."""

import uuid
from datetime import UTC, datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Response, status

from app.bookings import service
from app.bookings.models import CoachingSession
from app.bookings.schemas import (
    BookIn,
    CancelIn,
    HoldIn,
    Instant,
    OpenSlotsOut,
    RescheduleIn,
    SessionOut,
)
from app.deps import CallerDep, DatabaseDep, ResourcesDep, SettingsDep
from app.infra.schemas import PageOut
from app.scheduling.schemas import availability_out

router = APIRouter(prefix="/scheduling", tags=["scheduling"])

From = Annotated[Instant, Query(alias="from", description="RFC 3339 with an offset.")]
To = Annotated[Instant, Query(description="RFC 3339 with an offset; after `from`.")]


def _out(place: CoachingSession) -> SessionOut:
    out = SessionOut.model_validate(place)
    out.status = service.shown_status(place, datetime.now(UTC))
    return out


@router.post("/holds", status_code=status.HTTP_201_CREATED, response_model=SessionOut)
async def hold(
    body: HoldIn, caller: CallerDep, db: DatabaseDep, settings: SettingsDep
) -> SessionOut:
    """Keep a slot for BOOKING_HOLD_MINUTES while checking out; book it with `hold_id`.
    409 when the slot is taken or not offered."""
    held = await service.hold(
        db,
        caller,
        settings=settings,
        coach_id=body.coach_id,
        session_type_id=body.session_type_id,
        start=body.start,
        athlete_id=body.athlete_id,
    )
    return _out(held)


@router.delete("/holds/{hold_id}", status_code=status.HTTP_204_NO_CONTENT)
async def release_hold(hold_id: uuid.UUID, caller: CallerDep, db: DatabaseDep) -> Response:
    """Give the held slot back at once."""
    await service.release_hold(db, caller, hold_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/sessions/book", status_code=status.HTTP_201_CREATED, response_model=SessionOut)
async def book(
    body: BookIn, caller: CallerDep, db: DatabaseDep, settings: SettingsDep
) -> SessionOut:
    """Book a session: an ATHLETE for themselves, a SCHEDULER or ADMIN for any athlete
    (`athlete_id`). 409 when the slot is taken, full or not offered (availability, slot
    grid, minimum notice, booking window)."""
    booked = await service.book(
        db,
        caller,
        settings=settings,
        coach_id=body.coach_id,
        session_type_id=body.session_type_id,
        start=body.start,
        athlete_id=body.athlete_id,
        hold_id=body.hold_id,
    )
    return _out(booked)


@router.get("/sessions", response_model=PageOut[SessionOut])
async def list_sessions(
    caller: CallerDep,
    db: DatabaseDep,
    settings: SettingsDep,
    from_: From,
    to: To,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> PageOut[SessionOut]:
    """Scheduled and cancelled sessions overlapping [from, to), earliest first: an athlete's
    own, a coach's own, all for a SCHEDULER or ADMIN."""
    page = await service.list_sessions(
        db, caller, start=from_, end=to, limit=limit, cursor=cursor, settings=settings
    )
    return PageOut[SessionOut](items=[_out(s) for s in page.items], next_cursor=page.next_cursor)


@router.get("/sessions/{session_id}", response_model=SessionOut)
async def get_session(session_id: uuid.UUID, caller: CallerDep, db: DatabaseDep) -> SessionOut:
    return _out(await service.get_session(db, caller, session_id))


@router.post("/sessions/{session_id}/cancel", response_model=SessionOut)
async def cancel(
    session_id: uuid.UUID,
    body: CancelIn,
    caller: CallerDep,
    db: DatabaseDep,
    settings: SettingsDep,
) -> SessionOut:
    """Cancel a scheduled session: its athlete until the organisation's cutoff before it
    starts (409 after), its coach, a SCHEDULER or an ADMIN at any time."""
    cancelled = await service.cancel(db, caller, session_id, reason=body.reason, settings=settings)
    return _out(cancelled)


@router.post("/sessions/{session_id}/reschedule", response_model=SessionOut)
async def reschedule(
    session_id: uuid.UUID,
    body: RescheduleIn,
    caller: CallerDep,
    db: DatabaseDep,
    settings: SettingsDep,
) -> SessionOut:
    """Move a session to `start` (and optionally another type of the same coach): the old
    one cancelled and the new one booked in one transaction. Returns the new session."""
    moved = await service.reschedule(
        db,
        caller,
        session_id,
        start=body.start,
        session_type_id=body.session_type_id,
        reason=body.reason,
        settings=settings,
    )
    return _out(moved)


@router.get("/availability/{coach_id}", response_model=OpenSlotsOut)
async def open_slots(
    coach_id: uuid.UUID,
    caller: CallerDep,
    resources: ResourcesDep,
    from_: From,
    to: To,
    tz: Annotated[
        str, Query(max_length=64, description="IANA zone the slot times are given in.")
    ] = "UTC",
    session_type_id: uuid.UUID | None = None,
) -> Response:
    """The coach's weekly rules and date overrides, and the slots open in [from, to) after
    bookings, holds, buffers, notice and booking window, in the zone `tz`."""
    assert resources.read_pool is not None
    found = await service.open_slots(
        resources.read_pool,
        caller,
        coach_id,
        start=from_,
        end=to,
        time_zone=tz,
        session_type_id=session_type_id,
        settings=resources.settings,
    )
    # Four weeks are a thousand slots or more: they go to JSON as they are (orjson writes
    # RFC 3339 with the zone's offset) rather than through a model each; the schema above
    # stays the documented shape. The few rules and overrides go through their models.
    shown = availability_out(found.coach_id, found.rules, found.overrides)
    return Response(
        orjson.dumps(
            {
                **shown.model_dump(mode="json"),
                "time_zone": tz,
                "slots": [
                    {
                        "session_type_id": slot.session_type_id,
                        "start": slot.start,
                        "end": slot.end,
                        "seats_left": slot.seats_left,
                    }
                    for slot in found.slots
                ],
            }
        ),
        media_type="application/json",
    )
