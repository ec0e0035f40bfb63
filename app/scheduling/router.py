import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.deps import CallerDep, DatabaseDep
from app.infra.schemas import PageOut
from app.scheduling import service
from app.scheduling.schemas import (
    AvailabilityIn,
    AvailabilityOut,
    AvailabilityOverrideOut,
    AvailabilityRuleOut,
    OverrideUpdateIn,
    RuleUpdateIn,
    SessionTypeIn,
    SessionTypeOut,
    SessionTypeUpdateIn,
    availability_out,
)

router = APIRouter(prefix="/scheduling", tags=["scheduling"])


@router.post("/session-types", status_code=status.HTTP_201_CREATED, response_model=SessionTypeOut)
async def create_session_type(
    body: SessionTypeIn, caller: CallerDep, db: DatabaseDep
) -> SessionTypeOut:
    """A booking option of a coach: a COACH for themselves, an ADMIN or SCHEDULER for any
    coach of the organisation (`coach_id`)."""
    session_type = await service.create_session_type(
        db, caller, coach_id=body.coach_id, fields=body.model_dump(exclude={"coach_id"})
    )
    return SessionTypeOut.model_validate(session_type)


@router.get("/session-types", response_model=PageOut[SessionTypeOut])
async def list_session_types(
    caller: CallerDep,
    db: DatabaseDep,
    coach_id: uuid.UUID | None = None,
    include_inactive: bool = False,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> PageOut[SessionTypeOut]:
    """The organisation's session types, oldest first (active ones unless
    `include_inactive`); one coach's with `coach_id`."""
    page = await service.list_session_types(
        db, caller, coach_id=coach_id, include_inactive=include_inactive, limit=limit, cursor=cursor
    )
    return PageOut[SessionTypeOut](
        items=[SessionTypeOut.model_validate(t) for t in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("/session-types/{session_type_id}", response_model=SessionTypeOut)
async def get_session_type(
    session_type_id: uuid.UUID, caller: CallerDep, db: DatabaseDep
) -> SessionTypeOut:
    return SessionTypeOut.model_validate(
        await service.get_session_type(db, caller, session_type_id)
    )


@router.patch("/session-types/{session_type_id}", response_model=SessionTypeOut)
async def update_session_type(
    session_type_id: uuid.UUID, body: SessionTypeUpdateIn, caller: CallerDep, db: DatabaseDep
) -> SessionTypeOut:
    """Change a session type; `active: false` withdraws it from booking."""
    session_type = await service.update_session_type(
        db, caller, session_type_id, changes=body.model_dump(exclude_unset=True)
    )
    return SessionTypeOut.model_validate(session_type)


@router.post("/availability", status_code=status.HTTP_201_CREATED, response_model=AvailabilityOut)
async def add_availability(
    body: AvailabilityIn, caller: CallerDep, db: DatabaseDep
) -> AvailabilityOut:
    """Add weekly hours and date overrides to a coach's availability (a COACH their own, an
    ADMIN or SCHEDULER any coach's); returns what was added, with ids to edit or delete."""
    added = await service.add_availability(
        db,
        caller,
        coach_id=body.coach_id,
        time_zone=body.time_zone,
        effective_from=body.effective_from,
        effective_until=body.effective_until,
        rules=[service.NewWeeklyHours(r.weekday, r.start, r.end) for r in body.rules],
        overrides=[service.NewDateOverride(o.date, o.kind, o.start, o.end) for o in body.overrides],
    )
    return availability_out(added.coach_id, added.rules, added.overrides)


@router.patch("/availability/rules/{rule_id}", response_model=AvailabilityRuleOut)
async def update_rule(
    rule_id: uuid.UUID, body: RuleUpdateIn, caller: CallerDep, db: DatabaseDep
) -> AvailabilityRuleOut:
    rule = await service.update_rule(
        db, caller, rule_id, changes=body.model_dump(exclude_unset=True)
    )
    return AvailabilityRuleOut.model_validate(rule)


@router.delete("/availability/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_rule(rule_id: uuid.UUID, caller: CallerDep, db: DatabaseDep) -> Response:
    await service.delete_rule(db, caller, rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.patch("/availability/overrides/{override_id}", response_model=AvailabilityOverrideOut)
async def update_override(
    override_id: uuid.UUID, body: OverrideUpdateIn, caller: CallerDep, db: DatabaseDep
) -> AvailabilityOverrideOut:
    override = await service.update_override(
        db, caller, override_id, changes=body.model_dump(exclude_unset=True)
    )
    return AvailabilityOverrideOut.model_validate(override)


@router.delete("/availability/overrides/{override_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_override(override_id: uuid.UUID, caller: CallerDep, db: DatabaseDep) -> Response:
    await service.delete_override(db, caller, override_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
