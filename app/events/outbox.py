"""Writing events: always into the caller's open transaction, next to the change."""

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.events.models import OutboxEvent


def add_event(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    event_type: str,
    aggregate_type: str,
    aggregate_id: object,
    payload: dict[str, Any],
) -> OutboxEvent:
    """Stage an event in the session's transaction: it commits, or vanishes, with the change.

    The payload should be JSON-ready (ids as strings); it carries `event_id`, `tenant_id`
    and `type` too, so a consumer needs nothing but the message body.
    """
    event_id = uuid.uuid4()
    event = OutboxEvent(
        id=event_id,
        tenant_id=tenant_id,
        event_type=event_type,
        aggregate_type=aggregate_type,
        aggregate_id=str(aggregate_id),
        payload={
            "event_id": str(event_id),
            "type": event_type,
            "tenant_id": str(tenant_id),
            **payload,
        },
    )
    session.add(event)
    return event
