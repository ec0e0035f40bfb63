"""What every worker shares: health and metrics endpoints, SIGTERM handling, and the SQS
consumer loop with idempotent effects.

Delivery is at least once (SQS standard queues, and the relay may publish an event again
after a crash); effects are applied once because each handler inserts
processed_events(consumer, event_id) in the same transaction as its effect.

A message is trusted for nothing but a pointer (app/events/envelope.py). `apply_once`
opens a transaction in the tenant the envelope names — RLS shows it that tenant's rows
only — loads the outbox row by the envelope's id, and refuses the message unless the row
exists there with the envelope's type; the handler then runs with the row's payload, never
the message's. A forged message (anyone holding sqs:SendMessage), a real event id replayed
under another tenant, or a changed type is therefore refused: logged (`message_rejected`,
with the SQS SenderId), counted as outcome "rejected" in courtside_worker_messages_total,
and deleted. Deleting rather than leaving it for the dead-letter queue is deliberate: the
relay sends only committed rows, so a message without its row can never become valid on a
retry, and retrying would only let forged messages fill the DLQ, hide real poison messages
there, and be redriven by a well-meaning operator. A handler that fails on a real event
still leaves the message to be retried and, after maxReceiveCount, dead-lettered.

Retention: the scheduler deletes sent outbox rows after OUTBOX_RETENTION_HOURS, and a
message whose row is gone is refused like a forged one. The retention must therefore stay
above the longest a message can live: the MessageRetentionPeriod of the queues and of
their DLQs (SQS counts a dead-lettered message's age from its first enqueue; the default
is 4 days, and the 7-day default retention leaves 3 days of margin). A DLQ message
redriven after the retention is refused, not applied: replay such an event by inserting a
new outbox row instead.
"""

import asyncio
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from aiohttp import web
from botocore.exceptions import ClientError
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from app.events.envelope import Envelope, MalformedEnvelope
from app.events.models import OutboxEvent
from app.infra import aws
from app.infra.db import Database, asyncpg_dsn
from app.infra.settings import Settings

log = structlog.get_logger(__name__)

# What a consumer logs about each message it receives (SenderId: who sent a rejected one).
_ATTRIBUTES = ["ApproximateReceiveCount", "SenderId", "SentTimestamp"]

# After the grace period: how long cancelled handlers get to clean up before exit.
_CLEANUP_SECONDS = 10.0

MESSAGES = Counter("courtside_worker_messages_total", "Messages handled", ["consumer", "outcome"])
HANDLER_SECONDS = Histogram("courtside_worker_handler_seconds", "Handler latency", ["consumer"])


class Shutdown:
    """Set by SIGTERM/SIGINT: loops stop taking new work and finish what they hold."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.event.set)

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    async def sleep(self, seconds: float) -> None:
        """Sleep, waking early on shutdown."""
        try:
            await asyncio.wait_for(self.event.wait(), timeout=seconds)
        except TimeoutError:
            pass


async def serve_health(port: int, ready: Callable[[], Awaitable[bool]]) -> web.AppRunner:
    """/healthz and /metrics on the worker's own port."""

    async def healthz(_: web.Request) -> web.Response:
        ok = await ready()
        return web.json_response({"status": "ok" if ok else "unhealthy"}, status=200 if ok else 503)

    return await _serve(port, healthz)


async def _serve(
    port: int, healthz: Callable[[web.Request], Awaitable[web.Response]]
) -> web.AppRunner:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()  # noqa: S104 - a pod's port
    return runner


# Start-up: wait for what the worker needs instead of crash-looping. In a fresh cluster
# (`skaffold dev`, a first install) PostgreSQL, the migrations and the queues come up in any
# order: the queues only once the aws-init hook has run, after every pod has started.


class DependencyNotReady(Exception):
    """A dependency answered, but not as the worker needs (e.g. migrations not applied)."""


class DependenciesUnavailable(Exception):
    """The start-up deadline passed with a dependency still unreachable."""


@dataclass(frozen=True)
class Dependency:
    """Something a worker needs before it starts: `check` raises while it is unreachable."""

    name: str  # what the logs and /healthz call it
    where: str  # host:port/database or the queue URL: never a password
    check: Callable[[], Awaitable[None]]


def _postgresql(url: str) -> Dependency:
    parsed = make_url(url)
    where = f"{parsed.host}:{parsed.port or 5432}/{parsed.database}"

    async def check() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=5)
        try:
            # The schema, too: a worker that starts before the migrations fails on its
            # first query.
            if not await conn.fetchval("SELECT to_regclass('public.outbox_events') IS NOT NULL"):
                raise DependencyNotReady("connected, but migrations are not applied yet")
        finally:
            await conn.close()

    return Dependency("postgresql", where, check)


def _queue(settings: Settings, name: str, url: str) -> Dependency:
    async def check() -> None:
        if not url:
            raise DependencyNotReady("no queue URL is configured")
        async with aws.client(settings, "sqs") as sqs:
            try:
                await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            except ClientError as exc:
                # The relay may only send (iam/outbox-relay.json): SQS answering "access
                # denied" means it is there and reachable, which is all this waits for.
                if exc.response.get("Error", {}).get("Code") != "AccessDenied":
                    raise

    return Dependency(f"sqs {name} queue", url, check)


def dependencies(settings: Settings, worker: str) -> list[Dependency]:
    """What each worker needs before its loop starts, in the order it is checked."""
    notifications = _queue(settings, "notifications", settings.sqs_notifications_queue_url)
    media = _queue(settings, "media", settings.sqs_media_queue_url)
    return {
        "outbox-relay": [_postgresql(settings.relay_database_url), notifications, media],
        "notifications": [_postgresql(settings.database_url), notifications],
        "media": [_postgresql(settings.database_url), media],
        # Its jobs run as the relay role and, in a tenant's rows, as the runtime role.
        "scheduler": [
            _postgresql(settings.relay_database_url),
            _postgresql(settings.database_url),
        ],
    }.get(worker, [])


async def serve_starting(port: int, waiting_for: Callable[[], list[str]]) -> web.AppRunner:
    """/healthz (503, "starting", and what it waits for) and /metrics while a worker waits."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "starting", "waiting_for": waiting_for()}, status=503)

    return await _serve(port, healthz)


async def wait_for_dependencies(
    settings: Settings,
    worker: str,
    *,
    deadline_seconds: float,
    health_port: int | None,
    attempt_timeout: float = 5.0,
    max_backoff: float = 5.0,
) -> bool:
    """Check each of the worker's dependencies in turn, retrying with backoff until it
    answers, all within `deadline_seconds`. Logs what it waits for (`waiting_for_dependency`)
    and, if `health_port` is given, serves /healthz as "starting" meanwhile.

    Returns True once all answer, False if SIGTERM/SIGINT came first; raises
    DependenciesUnavailable, naming the dependency and its last error, at the deadline."""
    shutdown = Shutdown()
    shutdown.install()
    pending = dependencies(settings, worker)
    runner = (
        await serve_starting(health_port, lambda: [d.name for d in pending])
        if health_port is not None
        else None
    )
    give_up_at = time.monotonic() + deadline_seconds
    try:
        while pending:
            dependency = pending[0]
            backoff = 0.5
            while True:
                try:
                    await asyncio.wait_for(dependency.check(), timeout=attempt_timeout)
                except Exception as exc:  # noqa: BLE001 - any failure: not there yet
                    error = str(exc) or type(exc).__name__
                    left = give_up_at - time.monotonic()
                    if left <= 0:
                        raise DependenciesUnavailable(
                            f"gave up after {deadline_seconds:g}s waiting for {dependency.name} "
                            f"({dependency.where}): {error}"
                        ) from exc
                    delay = min(backoff, left)
                    log.warning(
                        "waiting_for_dependency",
                        worker=worker,
                        dependency=dependency.name,
                        where=dependency.where,
                        error=error,
                        retry_in=round(delay, 2),
                        gives_up_in=round(left, 1),
                    )
                    await shutdown.sleep(delay)
                    if shutdown.requested:
                        return False
                    backoff = min(backoff * 2, max_backoff)
                    continue
                log.info("dependency_ready", worker=worker, dependency=dependency.name)
                pending.pop(0)
                break
        log.info("dependencies_ready", worker=worker)
        return True
    finally:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if runner is not None:
            await runner.cleanup()


class Rejected(Exception):
    """A message no outbox row of its tenant vouches for: refused, counted and deleted."""


@dataclass(frozen=True)
class Event:
    """An event as a handler sees it: the checked envelope and the outbox row's payload."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    type: str
    payload: dict[str, Any]


Handler = Callable[[AsyncSession, Event], Awaitable[None]]

_CLAIM = text(
    "INSERT INTO processed_events (tenant_id, consumer, event_id) "
    "VALUES (:tenant_id, :consumer, :event_id) ON CONFLICT DO NOTHING "
    "RETURNING event_id"
)


_APPLIED = text(
    "SELECT true FROM processed_events "
    "WHERE tenant_id = :tenant_id AND consumer = :consumer AND event_id = :event_id"
)


async def _vouched_event(session: AsyncSession, envelope: Envelope) -> Event:
    """The event of the outbox row the envelope points at, in the session's tenant (the
    envelope's); raises Rejected unless that tenant has a row with this id and type."""
    # RLS limits this to the envelope's tenant; the explicit predicate says so too.
    row = (
        await session.execute(
            select(OutboxEvent.event_type, OutboxEvent.payload).where(
                OutboxEvent.tenant_id == envelope.tenant_id, OutboxEvent.id == envelope.id
            )
        )
    ).one_or_none()
    if row is None:
        raise Rejected("no outbox event with this id in this tenant")
    if row.event_type != envelope.type:
        raise Rejected(f"the outbox event's type is {row.event_type!r}")
    return Event(envelope.id, envelope.tenant_id, row.event_type, row.payload)


async def pending_event(db: Database, consumer: str, envelope: Envelope) -> Event | None:
    """The check apply_once makes, alone, in a short transaction: the event the envelope
    points at, or None if this consumer already applied it; raises Rejected as apply_once
    does. For handlers whose work must not hold a transaction open (a transcode): check,
    work outside, then record the result with apply_once."""
    async with db.transaction(envelope.tenant_id) as session:
        event = await _vouched_event(session, envelope)
        applied = await session.scalar(
            _APPLIED,
            {"tenant_id": envelope.tenant_id, "consumer": consumer, "event_id": envelope.id},
        )
        return None if applied else event


async def apply_once(db: Database, consumer: str, envelope: Envelope, handler: Handler) -> bool:
    """Run `handler` in the envelope's tenant, in one transaction with the processed_events
    marker, on the outbox row the envelope points at. Returns False (and does nothing) if
    this consumer already applied the event; raises Rejected if that tenant has no outbox
    row with this id and type."""
    async with db.transaction(envelope.tenant_id) as session:
        event = await _vouched_event(session, envelope)
        claimed = await session.scalar(
            _CLAIM, {"tenant_id": envelope.tenant_id, "consumer": consumer, "event_id": envelope.id}
        )
        if claimed is None:
            return False
        await handler(session, event)
    return True


class SqsConsumer:
    """Long-polls one queue, runs a handler per message with bounded concurrency.

    - a message's visibility is extended while its handler runs (long jobs);
    - success deletes it; failure leaves it to reappear, and SQS's redrive policy moves it
      to the dead-letter queue after maxReceiveCount receives;
    - a malformed or Rejected message is logged, counted as "rejected" and deleted;
    - on shutdown it stops receiving, waits up to the grace period for running handlers,
      and makes the rest visible again at once so another replica takes them.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        name: str,
        queue_url: str,
        handle: Callable[[Envelope], Awaitable[None]],
        shutdown: Shutdown,
        stop_when_idle: bool = False,
    ) -> None:
        self.settings = settings
        self.name = name
        self.queue_url = queue_url
        self.handle = handle
        self.shutdown = shutdown
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self.last_poll = time.monotonic()
        # One-shot mode (a KEDA ScaledJob): exit once a receive comes back empty.
        self.stop_when_idle = stop_when_idle

    async def run(self) -> None:
        async with aws.client(self.settings, "sqs") as sqs:
            self._sqs = sqs
            while not self.shutdown.requested:
                free = self.settings.worker_concurrency - len(self.in_flight)
                if free <= 0:
                    stopping = asyncio.ensure_future(self.shutdown.event.wait())
                    await asyncio.wait(
                        [*self.in_flight.values(), stopping], return_when=asyncio.FIRST_COMPLETED
                    )
                    stopping.cancel()
                    continue
                receive = asyncio.ensure_future(
                    sqs.receive_message(
                        QueueUrl=self.queue_url,
                        MaxNumberOfMessages=min(10, free),
                        WaitTimeSeconds=self.settings.sqs_wait_seconds,
                        VisibilityTimeout=self.settings.sqs_visibility_timeout,
                        MessageSystemAttributeNames=_ATTRIBUTES,
                    )
                )
                stop = asyncio.ensure_future(self.shutdown.event.wait())
                done, _ = await asyncio.wait({receive, stop}, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                if receive not in done:
                    receive.cancel()
                    break
                self.last_poll = time.monotonic()
                try:
                    messages = receive.result().get("Messages", [])
                except Exception as exc:  # noqa: BLE001 - SQS unreachable: wait, try again
                    log.warning("receive_failed", consumer=self.name, error=str(exc))
                    await self.shutdown.sleep(1.0)
                    continue
                if not messages and self.stop_when_idle and not self.in_flight:
                    break
                for message in messages:
                    self._start(message)
            await self._drain()

    def _start(self, message: dict[str, Any]) -> None:
        handle: str = message["ReceiptHandle"]
        task = asyncio.create_task(self._process(message))
        self.in_flight[handle] = task

        def forget(_: asyncio.Task[None]) -> None:
            self.in_flight.pop(handle, None)

        task.add_done_callback(forget)

    async def _drain(self) -> None:
        if not self.in_flight:
            return
        pending = dict(self.in_flight)
        _, still_running = await asyncio.wait(
            list(pending.values()), timeout=self.settings.worker_shutdown_grace_seconds
        )
        for handle, task in pending.items():
            if task in still_running:
                task.cancel()
                # Release it now instead of after the visibility timeout.
                await self._sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=0
                )
                MESSAGES.labels(self.name, "released").inc()
                log.warning("message_released_on_shutdown", consumer=self.name)
        if still_running:
            # Let the cancelled handlers clean up (kill their ffmpeg, remove scratch
            # files) before the process exits.
            await asyncio.wait(still_running, timeout=_CLEANUP_SECONDS)

    async def _process(self, message: dict[str, Any]) -> None:
        handle = message["ReceiptHandle"]
        heartbeat = asyncio.create_task(self._keep_invisible(handle))
        started = time.perf_counter()
        attributes = message.get("Attributes", {})
        outcome = "handled"
        envelope: Envelope | None = None
        try:
            envelope = Envelope.from_body(message["Body"])
            await self.handle(envelope)
        except asyncio.CancelledError:
            raise
        except (MalformedEnvelope, Rejected) as exc:
            outcome = "rejected"
            log.warning(
                "message_rejected",
                consumer=self.name,
                reason=str(exc),
                message_id=message.get("MessageId"),
                sender_id=attributes.get("SenderId"),
                event_id=str(envelope.id) if envelope else None,
                claimed_tenant_id=str(envelope.tenant_id) if envelope else None,
                claimed_type=envelope.type if envelope else None,
            )
        except Exception:
            MESSAGES.labels(self.name, "failed").inc()
            log.exception(
                "message_failed",
                consumer=self.name,
                receive_count=attributes.get("ApproximateReceiveCount"),
            )
            return
        finally:
            heartbeat.cancel()
            HANDLER_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        await self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=handle)
        MESSAGES.labels(self.name, outcome).inc()

    async def _keep_invisible(self, handle: str) -> None:
        """Extend the message's visibility every third of the timeout while its handler
        runs, for as long as it runs (an hour's transcode). A failed extension is retried at
        the next beat, which still comes before the message would reappear."""
        timeout = self.settings.sqs_visibility_timeout
        while True:
            await asyncio.sleep(max(1.0, timeout / 3))
            try:
                await self._sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=timeout
                )
            except Exception as exc:  # noqa: BLE001 - SQS hiccup: try again next beat
                log.warning("visibility_extension_failed", consumer=self.name, error=str(exc))
