"""Writing events: always into the caller's open transaction, next to the change."""

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.events.envelope import ENVELOPE_KEYS
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

    The payload should be JSON-ready (ids as strings) and holds only what the handlers
    need. The envelope (event id, type, tenant) lives in the row's own columns, which the
    relay sends and consumers check (app/events/envelope.py); a payload naming any of them
    is a bug or an attempt to speak for another tenant, so it raises ValueError.
    """
    event = OutboxEvent(
        **event_row(
            tenant_id=tenant_id,
            event_type=event_type,
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            payload=payload,
        )
    )
    session.add(event)
    return event


def event_row(
    *,
    tenant_id: uuid.UUID,
    event_type: str,
    aggregate_type: str,
    aggregate_id: object,
    payload: dict[str, Any],
) -> dict[str, Any]:
    """The column values of an outbox row (id, tenant_id, event_type, aggregate_type,
    aggregate_id, payload), checked as add_event checks them: for a hot path that writes
    the row with raw SQL in the same transaction as its change (the payload goes to the
    jsonb column as JSON text)."""
    clashing = sorted(ENVELOPE_KEYS & payload.keys())
    if clashing:
        raise ValueError(f"an event payload may not carry envelope keys: {clashing}")
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "event_type": event_type,
        "aggregate_type": aggregate_type,
        "aggregate_id": str(aggregate_id),
        "payload": dict(payload),
    }
