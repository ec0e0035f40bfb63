"""Media worker: adapts `media.process` jobs to `app.media.service.process_asset`, which
checks the uploaded object in S3 and records what it found on the media asset. Each job is
applied once per event (processed_events), in the tenant of the outbox row the message
points at and for the asset that row's payload names (workers/runtime.py refuses messages
no row vouches for).

Runs as a long-lived consumer, or with `--once` as a KEDA job that exits when the queue is
empty.
"""

import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.events.envelope import Envelope
from app.infra import aws
from app.infra.db import Database
from app.infra.settings import Settings
from app.media.service import process_asset
from workers.runtime import Event, Rejected, Shutdown, SqsConsumer, apply_once, serve_health

log = structlog.get_logger(__name__)
CONSUMER = "media"


class MediaHandler:
    """Runs one `media.process` message: checks it, then processes its asset once."""

    def __init__(self, settings: Settings, db: Database, s3: Any) -> None:
        self.settings = settings
        self.db = db
        self.s3 = s3

    async def __call__(self, envelope: Envelope) -> None:
        if envelope.type != "media.process":
            raise Rejected(f"the media worker takes media.process only, not {envelope.type!r}")

        async def effect(session: AsyncSession, event: Event) -> None:
            status = await process_asset(
                session, self.s3, self.settings.s3_bucket, uuid.UUID(event.payload["media_id"])
            )
            log.info("media_processed", media_id=event.payload["media_id"], status=status)

        await apply_once(self.db, CONSUMER, envelope, effect)


async def run(settings: Settings, *, once: bool = False) -> None:
    """`courtside worker media` (`--once`: stop when the queue is empty, for KEDA jobs)."""
    shutdown = Shutdown()
    shutdown.install()
    db = Database.from_settings(settings, application_name="courtside-media")
    async with aws.client(settings, "s3") as s3:
        consumer = SqsConsumer(
            settings,
            name=CONSUMER,
            queue_url=settings.sqs_media_queue_url,
            handle=MediaHandler(settings, db, s3),
            shutdown=shutdown,
            stop_when_idle=once,
        )

        async def healthy() -> bool:
            return True

        runner = None if once else await serve_health(settings.metrics_port, healthy)
        try:
            await consumer.run()
        finally:
            if runner is not None:
                await runner.cleanup()
            await db.dispose()
