"""Media worker: runs `media.process` jobs through app/media/processing.py.

A job takes minutes, so it never holds a database transaction open while it works: it
checks the message against its outbox row and reads the asset in short transactions,
downloads, transcodes and uploads outside any, then records the outcome in one
transaction with its processed_events marker (apply_once), re-locking the asset. Each
event is applied once, in the tenant of the outbox row the message points at and for the
asset that row's payload names (workers/runtime.py refuses messages no row vouches for).

SIGTERM: the job in hand gets WORKER_SHUTDOWN_GRACE_SECONDS to finish; after that it is
cancelled (ffmpeg killed, scratch files removed, nothing recorded) and its message made
visible again at once.

Runs as a long-lived consumer, or with `--once` as a KEDA job that exits when the queue is
empty.
"""

import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

import app.models  # noqa: F401  (every table mapped: the assets' foreign keys resolve at flush)
from app.events.envelope import Envelope
from app.infra import aws
from app.infra.db import Database
from app.infra.settings import Settings
from app.media import processing
from workers.runtime import (
    Event,
    Rejected,
    Shutdown,
    SqsConsumer,
    apply_once,
    pending_event,
    serve_health,
)

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
        event = await pending_event(self.db, CONSUMER, envelope)
        if event is None:
            log.info("duplicate_event_skipped", event_id=str(envelope.id))
            return
        media_id = uuid.UUID(event.payload["media_id"])
        job = await processing.load_job(self.db, event.tenant_id, media_id)
        if job is None:
            log.info("media_nothing_to_process", media_id=str(media_id))
            return
        outcome = await processing.process_original(self.s3, self.settings, job)
        recorded: list[processing.RecordResult] = []

        async def record(session: AsyncSession, _: Event) -> None:
            recorded.append(await processing.record_outcome(session, job, outcome))

        applied = await apply_once(self.db, CONSUMER, envelope, record)
        result = recorded[0] if applied else "duplicate"
        if result not in ("ready", "failed") and isinstance(outcome, processing.Ready):
            # Deleted meanwhile, or another delivery of the event got there first: these
            # renditions (keys of this attempt only) will never be referenced.
            await processing.delete_objects(self.s3, self.settings.s3_bucket, outcome.keys)
        log.info("media_processed", media_id=str(media_id), result=result)


async def run(settings: Settings, *, once: bool = False) -> None:
    """`courtside worker media` (`--once`: stop when the queue is empty, for KEDA jobs)."""
    # Each job is a transcode's worth of CPU, memory and scratch space.
    settings = settings.model_copy(update={"worker_concurrency": settings.media_worker_concurrency})
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
            # Not tied to the last poll: a worker busy with a long transcode polls no queue.
            return True

        runner = None if once else await serve_health(settings.metrics_port, healthy)
        try:
            await consumer.run()
        finally:
            if runner is not None:
                await runner.cleanup()
            await db.dispose()
