import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.calendar import service
from app.calendar.schemas import FeedTokenOut, IssuedFeedTokenOut
from app.deps import CallerDep, DatabaseDep, SettingsDep, ip_rate_limit

router = APIRouter(prefix="/scheduling", tags=["calendar"])

ICS_MEDIA_TYPE = "text/calendar; charset=utf-8"


@router.post(
    "/calendar-tokens", status_code=status.HTTP_201_CREATED, response_model=IssuedFeedTokenOut
)
async def create_calendar_token(
    request: Request, caller: CallerDep, db: DatabaseDep, settings: SettingsDep
) -> IssuedFeedTokenOut:
    """A read-only feed of the caller's sessions for a calendar app; `url` is shown once."""
    issued = await service.create_feed_token(db, caller, settings=settings)
    url = request.url_for("calendar_feed").include_query_params(token=issued.value)
    return IssuedFeedTokenOut(
        id=issued.row.id,
        created_at=issued.row.created_at,
        revoked_at=issued.row.revoked_at,
        token=issued.value,
        url=str(url),
        webcal_url=str(url.replace(scheme="webcal")),
    )


@router.get("/calendar-tokens", response_model=list[FeedTokenOut])
async def list_calendar_tokens(caller: CallerDep, db: DatabaseDep) -> list[FeedTokenOut]:
    """The caller's feed tokens, newest first (revoked ones too), without their secrets."""
    rows = await service.list_feed_tokens(db, caller)
    return [FeedTokenOut.model_validate(row) for row in rows]


@router.delete("/calendar-tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_calendar_token(token_id: uuid.UUID, caller: CallerDep, db: DatabaseDep) -> None:
    """Revoke a feed token: its URL answers 404 from now on."""
    await service.revoke_feed_token(db, caller, token_id)


@router.get(
    "/calendar.ics",
    name="calendar_feed",
    dependencies=[Depends(ip_rate_limit)],
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}}, 404: {"description": "No such feed"}},
)
async def calendar_feed(
    db: DatabaseDep,
    settings: SettingsDep,
    token: Annotated[str, Query(min_length=1, max_length=200)],
) -> Response:
    """The token's user's sessions as iCalendar, for calendar apps to subscribe to. No
    bearer token: the feed token in the URL is the credential."""
    body = await service.feed(db, token, settings=settings)
    return Response(
        content=body,
        media_type=ICS_MEDIA_TYPE,
        headers={
            # The URL is a credential: no shared cache keeps what it opened.
            "Cache-Control": "private, no-store",
            "Content-Disposition": 'inline; filename="courtside.ics"',
        },
    )
