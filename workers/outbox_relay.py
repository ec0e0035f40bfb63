"""Outbox relay: moves committed events from outbox_events to SQS.

Claims a batch with SELECT … FOR UPDATE SKIP LOCKED (replicas never take the same rows),
publishes it with SendMessageBatch, and marks the rows sent in the same transaction as the
claim. A crash after publishing and before the commit leaves the rows pending, so they are
published again: delivery is at least once, and consumers apply effects once
(processed_events).

A message is the event's envelope only — {"event_id", "type", "tenant_id"}, all three read
from the row's columns (app/events/envelope.py). The payload stays in the row: consumers
load the row by id in the envelope's tenant and refuse a message no row vouches for
(workers/runtime.py), so a payload can never redirect an event to another tenant, and a
message forged by anyone able to SendMessage points at nothing.

Ordering: the queues are SQS *standard* queues, so per-aggregate order is not preserved
end to end. Consumers tolerate reordering instead: every event carries the full state its
handler needs, and the handlers (notifications) don't depend on the order of events. FIFO
queues would cap throughput per message group and make one poison message block its whole
group; neither is worth it for notifications and media jobs.

Wakes on LISTEN outbox_events (a trigger NOTIFYs on insert), with polling as a fallback.
"""

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter, Gauge

from app.events.envelope import Envelope
from app.infra import aws
from app.infra.db import asyncpg_dsn
from app.infra.settings import Settings
from workers.runtime import Shutdown, serve_health

log = structlog.get_logger(__name__)

PUBLISHED = Counter("courtside_outbox_published_total", "Events published", ["queue"])
PUBLISH_FAILURES = Counter("courtside_outbox_publish_failures_total", "Failed publishes")
DEAD = Counter("courtside_outbox_dead_total", "Events given up on after max attempts")
BACKLOG = Gauge("courtside_outbox_backlog", "Pending events")
OLDEST_AGE = Gauge("courtside_outbox_oldest_pending_seconds", "Age of the oldest pending event")

_CLAIM = """
SELECT id, tenant_id, event_type, attempts FROM outbox_events
WHERE status = 'pending' AND available_at <= now()
ORDER BY created_at
LIMIT $1
FOR UPDATE SKIP LOCKED
"""
_MARK_SENT = (
    "UPDATE outbox_events SET status = 'sent', sent_at = now(), "
    "attempts = attempts + 1 WHERE id = ANY($1::uuid[])"
)
# Exponential backoff, capped at 10 minutes; dead after max attempts.
_MARK_FAILED = """
UPDATE outbox_events SET attempts = attempts + 1, last_error = $2,
  status = CASE WHEN attempts + 1 >= $3 THEN 'dead' ELSE 'pending' END,
  available_at = now() + least(interval '10 minutes', interval '1 second' * power(2, attempts))
WHERE id = ANY($1::uuid[])
RETURNING status
"""
_BACKLOG = (
    "SELECT count(*), extract(epoch FROM now() - min(created_at)) FROM outbox_events "
    "WHERE status = 'pending'"
)


def queue_urls(settings: Settings) -> dict[str, str]:
    """The SQS queue of each queue name `settings.event_routes` routes events to."""
    return {
        "notifications": settings.sqs_notifications_queue_url,
        "media": settings.sqs_media_queue_url,
    }


class Publisher:
    """Sends batches to SQS. Returns the ids that failed."""

    def __init__(self, sqs: Any, queue_urls: dict[str, str]) -> None:
        self.sqs = sqs
        self.queue_urls = queue_urls

    async def publish(self, queue: str, events: list[tuple[str, str]]) -> set[str]:
        failed: set[str] = set()
        url = self.queue_urls[queue]
        for start in range(0, len(events), 10):
            chunk = events[start : start + 10]
            try:
                result = await self.sqs.send_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "MessageBody": body} for i, (_, body) in enumerate(chunk)
                    ],
                )
            except Exception as exc:  # noqa: BLE001 - any transport error fails the chunk
                log.warning("publish_failed", queue=queue, error=str(exc))
                failed |= {event_id for event_id, _ in chunk}
                continue
            failed |= {chunk[int(f["Id"])][0] for f in result.get("Failed", [])}
            PUBLISHED.labels(queue).inc(len(chunk) - len(result.get("Failed", [])))
        return failed


@dataclass
class RelayStats:
    claimed: int = 0
    sent: int = 0
    failed: int = 0


class OutboxRelay:
    def __init__(self, settings: Settings, publisher: Publisher, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.publisher = publisher
        self.pool = pool
        self.routes = settings.event_routes
        self.last_loop = time.monotonic()

    async def relay_batch(self) -> RelayStats:
        """Claim, publish and mark one batch; returns what happened."""
        stats = RelayStats()
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, self.settings.outbox_batch_size)
            stats.claimed = len(rows)
            if not rows:
                return stats
            by_queue: dict[str, list[tuple[str, str]]] = {}
            for row in rows:
                body = Envelope(row["id"], row["tenant_id"], row["event_type"]).to_body()
                for queue in self.routes.get(row["event_type"], []):
                    by_queue.setdefault(queue, []).append((str(row["id"]), body))
            failed: set[str] = set()
            for queue, events in by_queue.items():
                failed |= await self.publisher.publish(queue, events)
            sent = [row["id"] for row in rows if str(row["id"]) not in failed]
            if sent:
                await conn.execute(_MARK_SENT, sent)
            if failed:
                PUBLISH_FAILURES.inc(len(failed))
                statuses = await conn.fetch(
                    _MARK_FAILED, list(failed), "publish failed", self.settings.outbox_max_attempts
                )
                DEAD.inc(sum(1 for s in statuses if s["status"] == "dead"))
            stats.sent, stats.failed = len(sent), len(failed)
        return stats

    async def drain(self) -> int:
        """Relay until nothing is ready; returns how many events were sent."""
        total = 0
        while True:
            stats = await self.relay_batch()
            total += stats.sent
            if stats.claimed < self.settings.outbox_batch_size:
                return total

    async def refresh_gauges(self) -> None:
        async with self.pool.acquire() as conn:
            count, age = await conn.fetchrow(_BACKLOG)
        BACKLOG.set(count)
        OLDEST_AGE.set(float(age or 0))

    async def run_forever(self, shutdown: Shutdown) -> None:
        """Relay whenever events commit (LISTEN) or every poll interval, until shutdown."""
        listener = await asyncpg.connect(asyncpg_dsn(self.settings.relay_database_url))
        wake = asyncio.Event()
        await listener.add_listener("outbox_events", lambda *_: wake.set())
        stopping = asyncio.ensure_future(shutdown.event.wait())
        try:
            while not shutdown.requested:
                self.last_loop = time.monotonic()
                wake.clear()
                try:
                    await self.drain()
                    await self.refresh_gauges()
                except (asyncpg.PostgresError, OSError) as exc:
                    log.warning("relay_error", error=str(exc))
                woken = asyncio.ensure_future(wake.wait())
                await asyncio.wait(
                    {woken, stopping},
                    timeout=self.settings.outbox_poll_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                woken.cancel()
        finally:
            stopping.cancel()
            await listener.close()


async def run(settings: Settings) -> None:
    """`courtside worker outbox-relay`."""
    shutdown = Shutdown()
    shutdown.install()
    pool = await asyncpg.create_pool(
        asyncpg_dsn(settings.relay_database_url), min_size=1, max_size=4
    )
    try:
        async with aws.client(settings, "sqs") as sqs:
            relay = OutboxRelay(settings, Publisher(sqs, queue_urls(settings)), pool)

            async def healthy() -> bool:
                return time.monotonic() - relay.last_loop < max(
                    60.0, settings.outbox_poll_seconds * 10
                )

            runner = await serve_health(settings.metrics_port, healthy)
            log.info("outbox_relay_started")
            try:
                await relay.run_forever(shutdown)
            finally:
                await runner.cleanup()
    finally:
        await pool.close()
