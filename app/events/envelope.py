"""The message the relay sends for an outbox event: its envelope, and nothing else.

The relay builds the envelope (event id, type, tenant) from the outbox row's columns, never
from its payload. A consumer treats a message only as a pointer: it loads the row by id
inside the named tenant's RLS transaction, refuses the message unless that row exists with
that type, and runs its handler with the row's payload (`workers/runtime.py`). So a message
is worth nothing without a committed row of that tenant, and the payload is not sent at
all: nothing downstream can be tempted to trust a copy that anyone able to SendMessage
could have written.
"""

import json
import uuid
from dataclasses import dataclass

# Keys of the envelope; a payload may not carry them (app/events/outbox.py).
ENVELOPE_KEYS = frozenset({"event_id", "type", "tenant_id"})
_MAX_TYPE_LENGTH = 64  # outbox_events.event_type


class MalformedEnvelope(ValueError):
    """A message body that is not an envelope."""


@dataclass(frozen=True)
class Envelope:
    id: uuid.UUID
    tenant_id: uuid.UUID
    type: str

    def to_body(self) -> str:
        return json.dumps(
            {"event_id": str(self.id), "type": self.type, "tenant_id": str(self.tenant_id)},
            separators=(",", ":"),
        )

    @classmethod
    def from_body(cls, body: str) -> "Envelope":
        """Parse a message body. Other keys are ignored (messages sent before this format
        carried the payload beside the envelope; consumers read the row's payload anyway)."""
        try:
            data = json.loads(body)
            event_id, tenant_id, event_type = data["event_id"], data["tenant_id"], data["type"]
            if not isinstance(event_type, str) or not 0 < len(event_type) <= _MAX_TYPE_LENGTH:
                raise MalformedEnvelope("type must be a short string")
            return cls(uuid.UUID(event_id), uuid.UUID(tenant_id), event_type)
        except MalformedEnvelope:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise MalformedEnvelope(f"not an event envelope: {type(exc).__name__}") from None
