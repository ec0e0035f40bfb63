import uuid
from datetime import datetime
from typing import Any

from app.infra.schemas import ResponseBody


class NotificationOut(ResponseBody):
    id: uuid.UUID
    kind: str
    title: str
    body: str
    data: dict[str, Any]
    read_at: datetime | None
    created_at: datetime
