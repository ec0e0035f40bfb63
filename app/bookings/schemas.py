import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, Field

from app.infra.schemas import RequestBody, ResponseBody
from app.scheduling.schemas import AvailabilityOut

# RFC 3339 with an offset: a time without one is ambiguous and refused (422).
Instant = Annotated[AwareDatetime, Field(description="RFC 3339 with an offset.")]


class HoldIn(RequestBody):
    coach_id: uuid.UUID
    session_type_id: uuid.UUID
    start: Instant
    athlete_id: Annotated[
        uuid.UUID | None,
        Field(description="For SCHEDULER/ADMIN: the athlete; an ATHLETE books for themselves."),
    ] = None


class BookIn(HoldIn):
    hold_id: Annotated[
        uuid.UUID | None, Field(description="Your live hold of this slot, to convert.")
    ] = None


class CancelIn(RequestBody):
    reason: Annotated[str | None, Field(max_length=1000)] = None


class RescheduleIn(RequestBody):
    start: Instant
    session_type_id: Annotated[
        uuid.UUID | None, Field(description="Another of the coach's types; the same if absent.")
    ] = None
    reason: Annotated[str | None, Field(max_length=1000)] = None


class SessionsQuery(BaseModel):
    from_: Instant = Field(alias="from")
    to: Instant
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=200, description="`next_cursor` of the last page.")


class SessionOut(ResponseBody):
    id: uuid.UUID
    coach_id: uuid.UUID
    athlete_id: uuid.UUID
    session_type_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    # held | scheduled | cancelled | expired (a hold past hold_expires_at reads expired).
    status: str
    hold_expires_at: datetime | None
    booked_by: uuid.UUID
    cancelled_at: datetime | None
    cancelled_by: uuid.UUID | None
    cancel_reason: str | None
    created_at: datetime


class SlotOut(BaseModel):
    """A start that can be booked now, and its places left (always 1 for a private type)."""

    session_type_id: uuid.UUID
    start: datetime
    end: datetime
    seats_left: int


class OpenSlotsOut(AvailabilityOut):
    """The coach's rules and overrides, and the slots still open in the range."""

    time_zone: str = Field(description="The viewer's zone: slot times carry its offset.")
    slots: list[SlotOut]
