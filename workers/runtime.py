"""What every worker shares: health and metrics endpoints, SIGTERM handling, and the SQS
consumer loop with idempotent effects.

Delivery is at least once (SQS standard queues, and the relay may publish an event again
after a crash); effects are applied once because each handler inserts
processed_events(consumer, event_id) in the same transaction as its effect.
"""

import asyncio
import json
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app import aws
from app.db import Database
from app.settings import Settings

log = structlog.get_logger(__name__)

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

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()  # noqa: S104 - a pod's port
    return runner


@dataclass(frozen=True)
class Event:
    id: uuid.UUID
    tenant_id: uuid.UUID
    type: str
    payload: dict[str, Any]

    @classmethod
    def from_body(cls, body: str) -> "Event":
        data = json.loads(body)
        return cls(uuid.UUID(data["event_id"]), uuid.UUID(data["tenant_id"]), data["type"], data)


Handler = Callable[[AsyncSession, Event], Awaitable[None]]

_CLAIM = text(
    "INSERT INTO processed_events (tenant_id, consumer, event_id) "
    "VALUES (:tenant_id, :consumer, :event_id) ON CONFLICT DO NOTHING "
    "RETURNING event_id"
)


async def apply_once(db: Database, consumer: str, event: Event, handler: Handler) -> bool:
    """Run `handler` in the event's tenant, in one transaction with the processed_events
    marker. Returns False (and does nothing) if this consumer already applied the event."""
    async with db.transaction(event.tenant_id) as session:
        claimed = await session.scalar(
            _CLAIM, {"tenant_id": event.tenant_id, "consumer": consumer, "event_id": event.id}
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
    - on shutdown it stops receiving, waits up to the grace period for running handlers,
      and makes the rest visible again at once so another replica takes them.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        name: str,
        queue_url: str,
        handle: Callable[[Event], Awaitable[None]],
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
        session = aws.session()
        async with session.client("sqs", **aws.client_kwargs(self.settings)) as sqs:
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

    async def _process(self, message: dict[str, Any]) -> None:
        handle = message["ReceiptHandle"]
        heartbeat = asyncio.create_task(self._keep_invisible(handle))
        started = time.perf_counter()
        try:
            event = Event.from_body(message["Body"])
            await self.handle(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            MESSAGES.labels(self.name, "failed").inc()
            log.exception(
                "message_failed",
                consumer=self.name,
                receive_count=message.get("Attributes", {}).get("ApproximateReceiveCount"),
            )
            return
        finally:
            heartbeat.cancel()
            HANDLER_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        await self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=handle)
        MESSAGES.labels(self.name, "handled").inc()

    async def _keep_invisible(self, handle: str) -> None:
        timeout = self.settings.sqs_visibility_timeout
        while True:
            await asyncio.sleep(max(1.0, timeout / 2))
            await self._sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=timeout
            )
