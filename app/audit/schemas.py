import uuid
from datetime import datetime
from typing import Any

from pydantic import field_validator

from app.infra.schemas import ResponseBody


class AuditLogOut(ResponseBody):
    id: uuid.UUID
    actor_user_id: uuid.UUID | None
    action: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    request_id: str | None
    details: dict[str, Any]
    created_at: datetime

    @field_validator("ip", mode="before")
    @classmethod
    def _ip_text(cls, value: object) -> str | None:
        return None if value is None else str(value)
