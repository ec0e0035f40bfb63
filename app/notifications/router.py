import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import CallerDep, DatabaseDep
from app.infra.schemas import PageOut
from app.notifications import service
from app.notifications.schemas import NotificationOut

router = APIRouter(prefix="/notifications", tags=["notifications"])


@router.get("", response_model=PageOut[NotificationOut])
async def list_notifications(
    caller: CallerDep,
    db: DatabaseDep,
    unread: bool = False,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> PageOut[NotificationOut]:
    """The caller's notifications, newest first (`unread=true` for unread only)."""
    page = await service.list_notifications(
        db, caller, unread_only=unread, limit=limit, cursor=cursor
    )
    return PageOut[NotificationOut](
        items=[NotificationOut.model_validate(n) for n in page.items], next_cursor=page.next_cursor
    )


@router.post("/{notification_id}/read", response_model=NotificationOut)
async def mark_read(
    notification_id: uuid.UUID, caller: CallerDep, db: DatabaseDep
) -> NotificationOut:
    return NotificationOut.model_validate(await service.mark_read(db, caller, notification_id))
