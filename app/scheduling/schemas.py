"""Request and response bodies of session types and availability.

Wall-clock times are "HH:MM" (whole minutes, no offset: they are read in `time_zone`);
an end may be "24:00" (until midnight). Weekdays are 0 (Monday) to 6 (Sunday), as
Python's date.weekday(). Dates are local dates in `time_zone`.
"""

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from app.infra.schemas import RequestBody, ResponseBody
from app.scheduling import slots


def _whole_minutes(value: dt.time) -> dt.time:
    if value.tzinfo is not None:
        raise ValueError("a wall-clock time has no offset: it is read in time_zone")
    if value != slots.END_OF_DAY and (value.second or value.microsecond):
        raise ValueError("times are whole minutes (HH:MM)")
    return value


def _midnight_as_end(value: object) -> object:
    return slots.END_OF_DAY if value in ("24:00", "24:00:00") else value


def _format_time(value: dt.time) -> str:
    return "24:00" if value == slots.END_OF_DAY else value.strftime("%H:%M")


def _known_zone(value: str) -> str:
    if not slots.is_known_zone(value):
        raise ValueError("not an IANA time zone (e.g. Europe/Berlin)")
    return value


_TIME_SCHEMA = {"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d$", "examples": ["09:00"]}
_END_SCHEMA = {
    "type": "string",
    "pattern": r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$",
    "examples": ["17:00", "24:00"],
}

StartTime = Annotated[
    dt.time,
    AfterValidator(_whole_minutes),
    PlainSerializer(_format_time, return_type=str, when_used="json"),
    WithJsonSchema(_TIME_SCHEMA),
]
EndTime = Annotated[
    dt.time,
    BeforeValidator(_midnight_as_end),
    AfterValidator(_whole_minutes),
    PlainSerializer(_format_time, return_type=str, when_used="json"),
    WithJsonSchema(_END_SCHEMA),
]
TimeZone = Annotated[
    str,
    Field(max_length=64, examples=["America/New_York"], description="IANA time zone"),
    AfterValidator(_known_zone),
]
Weekday = Annotated[int, Field(ge=0, le=6, description="0 = Monday … 6 = Sunday")]
OverrideKind = Literal["unavailable", "available"]


def _check_hours(start: dt.time | None, end: dt.time | None) -> None:
    if start is not None and end is not None and end <= start:
        raise ValueError("end must be after start")


def _check_effective(first: dt.date | None, last: dt.date | None) -> None:
    if first is not None and last is not None and last < first:
        raise ValueError("effective_until must not be before effective_from")


# Session types


Title = Annotated[str, Field(min_length=1, max_length=200)]
Location = Annotated[str, Field(max_length=500)]
Duration = Annotated[int, Field(ge=5, le=1440, description="Minutes")]
Buffer = Annotated[int, Field(ge=0, le=720, description="Minutes kept free (not bookable)")]
Capacity = Annotated[int, Field(ge=1, le=500, description="1: private; more: a group clinic")]
MinNotice = Annotated[
    int, Field(ge=0, le=525_600, description="Minutes between booking and start, at least")
]
BookingWindow = Annotated[
    int, Field(ge=1, le=730, description="Days ahead a session may start, at most")
]


class SessionTypeIn(RequestBody):
    coach_id: uuid.UUID | None = Field(
        None, description="The coach offering it (default: the caller, who must be a COACH)"
    )
    title: Title
    duration_minutes: Duration
    buffer_before_minutes: Buffer = 0
    buffer_after_minutes: Buffer = 0
    location: Location | None = None
    capacity: Capacity = 1
    min_notice_minutes: MinNotice = 0
    booking_window_days: BookingWindow = 60


class SessionTypeUpdateIn(RequestBody):
    """Only the fields sent change; `active: false` withdraws the type from booking (a type
    is never deleted: sessions refer to it)."""

    title: Title | None = None
    duration_minutes: Duration | None = None
    buffer_before_minutes: Buffer | None = None
    buffer_after_minutes: Buffer | None = None
    location: Location | None = None
    capacity: Capacity | None = None
    min_notice_minutes: MinNotice | None = None
    booking_window_days: BookingWindow | None = None
    active: bool | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        nulls = [f for f in self.model_fields_set if f != "location" and getattr(self, f) is None]
        if nulls:
            raise ValueError(f"cannot be null: {', '.join(sorted(nulls))}")
        return self


class SessionTypeOut(ResponseBody):
    id: uuid.UUID
    coach_id: uuid.UUID
    title: str
    duration_minutes: int
    buffer_before_minutes: int
    buffer_after_minutes: int
    location: str | None
    capacity: int
    min_notice_minutes: int
    booking_window_days: int
    active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


# Availability


class WeeklyHoursIn(RequestBody):
    weekday: Weekday
    start: StartTime
    end: EndTime

    @model_validator(mode="after")
    def _hours(self) -> Self:
        _check_hours(self.start, self.end)
        return self


class DateOverrideIn(RequestBody):
    """`unavailable` without hours: the day off; with hours: those hours off.
    `available`: extra hours on that date (with a day off on the same date, they replace
    the weekly hours)."""

    date: dt.date
    kind: OverrideKind
    start: StartTime | None = None
    end: EndTime | None = None

    @model_validator(mode="after")
    def _hours(self) -> Self:
        if (self.start is None) != (self.end is None):
            raise ValueError("give both start and end, or neither (the whole day)")
        if self.kind == "available" and self.start is None:
            raise ValueError("available hours need start and end")
        _check_hours(self.start, self.end)
        return self


class AvailabilityIn(RequestBody):
    """Weekly hours and date overrides, all in `time_zone`; added to what the coach has.
    The effective dates (inclusive; omitted: open) apply to every rule of this request."""

    coach_id: uuid.UUID | None = Field(
        None, description="Whose availability (default: the caller, who must be a COACH)"
    )
    time_zone: TimeZone
    effective_from: dt.date | None = None
    effective_until: dt.date | None = None
    rules: list[WeeklyHoursIn] = Field(default_factory=list, max_length=200)
    overrides: list[DateOverrideIn] = Field(default_factory=list, max_length=500)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _check_effective(self.effective_from, self.effective_until)
        if not self.rules and not self.overrides:
            raise ValueError("give rules, overrides or both")
        return self


class RuleUpdateIn(RequestBody):
    """Only the fields sent change; effective dates may be set to null (open)."""

    weekday: Weekday | None = None
    start: StartTime | None = None
    end: EndTime | None = None
    time_zone: TimeZone | None = None
    effective_from: dt.date | None = None
    effective_until: dt.date | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        required = {"weekday", "start", "end", "time_zone"}
        nulls = [f for f in self.model_fields_set & required if getattr(self, f) is None]
        if nulls:
            raise ValueError(f"cannot be null: {', '.join(sorted(nulls))}")
        return self


class OverrideUpdateIn(RequestBody):
    """Only the fields sent change; start and end set to null make it the whole day."""

    date: dt.date | None = None
    kind: OverrideKind | None = None
    start: StartTime | None = None
    end: EndTime | None = None
    time_zone: TimeZone | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        required = {"date", "kind", "time_zone"}
        nulls = [f for f in self.model_fields_set & required if getattr(self, f) is None]
        if nulls:
            raise ValueError(f"cannot be null: {', '.join(sorted(nulls))}")
        return self


class AvailabilityRuleOut(ResponseBody):
    id: uuid.UUID
    coach_id: uuid.UUID
    weekday: int
    start: StartTime = Field(validation_alias=AliasChoices("start_time", "start"))
    end: EndTime = Field(validation_alias=AliasChoices("end_time", "end"))
    time_zone: str
    effective_from: dt.date | None
    effective_until: dt.date | None
    created_at: dt.datetime


class AvailabilityOverrideOut(ResponseBody):
    id: uuid.UUID
    coach_id: uuid.UUID
    date: dt.date = Field(validation_alias=AliasChoices("day", "date"))
    kind: OverrideKind
    start: StartTime | None = Field(validation_alias=AliasChoices("start_time", "start"))
    end: EndTime | None = Field(validation_alias=AliasChoices("end_time", "end"))
    time_zone: str
    created_at: dt.datetime


class AvailabilityOut(ResponseBody):
    coach_id: uuid.UUID
    rules: list[AvailabilityRuleOut]
    overrides: list[AvailabilityOverrideOut]


def availability_out(
    coach_id: uuid.UUID,
    rules: Sequence[object],
    overrides: Sequence[object],
) -> AvailabilityOut:
    """The response body of a coach's rules and overrides (the models coach_availability
    gives, or service.availability_records' records), for any route that shows them."""
    return AvailabilityOut(
        coach_id=coach_id,
        rules=[AvailabilityRuleOut.model_validate(r) for r in rules],
        overrides=[AvailabilityOverrideOut.model_validate(o) for o in overrides],
    )
