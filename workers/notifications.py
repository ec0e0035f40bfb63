"""Notifications worker: in-app notifications and email for post, comment and session
events, each applied once per event (processed_events), in the tenant of the outbox row the
message points at and from that row's payload (workers/runtime.py refuses the rest)."""

import time

import structlog

from app.events.envelope import Envelope
from app.infra.db import Database
from app.infra.settings import Settings
from app.notifications import service
from workers.runtime import Event, Shutdown, SqsConsumer, apply_once, serve_health

log = structlog.get_logger(__name__)
CONSUMER = "notifications"


class NotificationsHandler:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    async def __call__(self, envelope: Envelope) -> None:
        async def effect(session, event: Event) -> None:  # noqa: ANN001
            await service.notify(
                session,
                tenant_id=event.tenant_id,
                event_id=event.id,
                event_type=event.type,
                payload=event.payload,
            )

        applied = await apply_once(self.db, CONSUMER, envelope, effect)
        if not applied:
            log.info("duplicate_event_skipped", event_id=str(envelope.id), type=envelope.type)
        # Also after a duplicate: finishes emails a crashed attempt left unsent. (A refused
        # message never gets here: apply_once raised.)
        await service.send_pending_emails(
            self.db, self.settings, tenant_id=envelope.tenant_id, event_id=envelope.id
        )


async def run(settings: Settings) -> None:
    """`courtside worker notifications`."""
    shutdown = Shutdown()
    shutdown.install()
    db = Database.from_settings(settings, application_name="courtside-notifications")
    consumer = SqsConsumer(
        settings,
        name=CONSUMER,
        queue_url=settings.sqs_notifications_queue_url,
        handle=NotificationsHandler(settings, db),
        shutdown=shutdown,
    )

    async def healthy() -> bool:
        return time.monotonic() - consumer.last_poll < settings.sqs_wait_seconds * 3 + 30

    runner = await serve_health(settings.metrics_port, healthy)
    try:
        await consumer.run()
    finally:
        await runner.cleanup()
        await db.dispose()
