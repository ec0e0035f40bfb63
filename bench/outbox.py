"""Outbox relay benchmark (`make bench-outbox`).

moto's SQS server is itself slow and slows as a queue grows, so the relay is measured in
parts: (a) database-side throughput — claiming and marking batches with a publisher that
discards messages; (b) the raw SendMessageBatch rate of the SQS server and the relay's
end-to-end rate into it, both with consumers draining, as a ratio; (c) p99 lag from the
event's commit to its consumer effect (an idempotent apply_once) at a steady 100 events/s.
"""

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402

from app.events.envelope import Envelope  # noqa: E402
from app.infra import aws
from app.infra.db import Database, asyncpg_dsn  # noqa: E402
from app.infra.settings import Settings  # noqa: E402
from bench.common import Stack  # noqa: E402
from courtside.local import devstack  # noqa: E402
from workers.outbox_relay import OutboxRelay, Publisher  # noqa: E402
from workers.runtime import Event, Shutdown, apply_once  # noqa: E402

DB_EVENTS, SQS_EVENTS, LAG_RATE, LAG_SECONDS = 20_000, 1_500, 100, 10


class DiscardingPublisher(Publisher):
    def __init__(self) -> None:
        super().__init__(None, {})

    async def publish(self, queue: str, events: list[tuple[str, str]]) -> set[str]:
        return set()


async def insert_events(dsn: str, tenant: uuid.UUID, count: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        records = [
            (
                uuid.uuid4(),
                tenant,
                "post.created",
                "post",
                str(i),
                json.dumps({"event_id": "", "tenant_id": str(tenant), "type": "post.created"}),
            )
            for i in range(count)
        ]
        await conn.copy_records_to_table(
            "outbox_events",
            records=records,
            columns=["id", "tenant_id", "event_type", "aggregate_type", "aggregate_id", "payload"],
        )
    finally:
        await conn.close()


async def drainer(sqs, url: str, stop: asyncio.Event, on_message=None) -> int:  # noqa: ANN001
    handled = 0
    while not stop.is_set():
        batch = (
            await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        ).get("Messages", [])
        if not batch:
            continue
        if on_message is not None:
            await asyncio.gather(*(on_message(m) for m in batch))
        await sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
        handled += len(batch)
    return handled


async def new_queue(sqs) -> str:  # noqa: ANN001
    return (await sqs.create_queue(QueueName=f"bench-{uuid.uuid4().hex[:10]}"))["QueueUrl"]


async def main_async(stack: Stack, tenant: uuid.UUID) -> None:
    settings = stack.settings.model_copy(update={"outbox_batch_size": 500})
    pool = await asyncpg.create_pool(
        asyncpg_dsn(settings.relay_database_url), min_size=1, max_size=4
    )

    # (a) database side
    await insert_events(stack.superuser_dsn, tenant, DB_EVENTS)
    relay = OutboxRelay(settings, DiscardingPublisher(), pool)
    started = time.perf_counter()
    sent = await relay.drain()
    db_rate = sent / (time.perf_counter() - started)
    print(
        f"(a) db-side: {sent} events claimed+marked in batches of "
        f"{settings.outbox_batch_size}: {db_rate:,.0f} events/s"
    )

    async with aws.client(settings, "sqs") as sqs:
        # (b) raw SQS batch sends vs the relay into the same kind of queue, drained meanwhile
        url = await new_queue(sqs)
        stop = asyncio.Event()
        drain = asyncio.create_task(drainer(sqs, url, stop))
        body = json.dumps(
            {"event_id": str(uuid.uuid4()), "tenant_id": str(tenant), "type": "post.created"}
        )
        started = time.perf_counter()
        for _ in range(0, SQS_EVENTS, 10):
            await sqs.send_message_batch(
                QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": body} for i in range(10)]
            )
        raw_rate = SQS_EVENTS / (time.perf_counter() - started)
        stop.set()
        await drain

        url = await new_queue(sqs)
        relay_settings = settings.model_copy(update={"outbox_batch_size": 100})
        relay = OutboxRelay(relay_settings, Publisher(sqs, {"notifications": url}), pool)
        await insert_events(stack.superuser_dsn, tenant, SQS_EVENTS)
        stop = asyncio.Event()
        drain = asyncio.create_task(drainer(sqs, url, stop))
        started = time.perf_counter()
        sent = await relay.drain()
        relay_rate = sent / (time.perf_counter() - started)
        stop.set()
        await drain
        ratio = relay_rate / raw_rate
        print(
            f"(b) SQS (moto): raw SendMessageBatch {raw_rate:,.0f} msg/s; relay end to end "
            f"{relay_rate:,.0f} events/s; ratio {ratio:.2f}"
        )

        # (c) lag at a steady rate: commit -> consumer effect (apply_once)
        url = await new_queue(sqs)
        relay = OutboxRelay(
            settings.model_copy(update={"outbox_poll_seconds": 1.0}),
            Publisher(sqs, {"notifications": url}),
            pool,
        )
        shutdown = Shutdown()
        relay_task = asyncio.create_task(relay.run_forever(shutdown))
        db = Database.from_settings(settings, application_name="bench-outbox")
        committed: dict[str, float] = {}
        lags: list[float] = []

        async def effect(session, event: Event) -> None:  # noqa: ANN001
            return None

        async def consume(message) -> None:  # noqa: ANN001
            event = Envelope.from_body(message["Body"])
            await apply_once(db, "bench", event, effect)
            lags.append(time.perf_counter() - committed[str(event.id)])

        stop = asyncio.Event()
        drains = [asyncio.create_task(drainer(sqs, url, stop, consume)) for _ in range(2)]
        producer = await asyncpg.connect(stack.superuser_dsn)
        interval = 1 / LAG_RATE
        next_at = time.perf_counter()
        for _ in range(LAG_RATE * LAG_SECONDS):
            event_id = uuid.uuid4()
            payload = json.dumps(
                {"event_id": str(event_id), "tenant_id": str(tenant), "type": "post.created"}
            )
            await producer.execute(
                "INSERT INTO outbox_events (id, tenant_id, event_type, aggregate_type, "
                "aggregate_id, payload) VALUES ($1, $2, 'post.created', 'post', 'x', $3)",
                event_id,
                tenant,
                payload,
            )
            committed[str(event_id)] = time.perf_counter()
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        deadline = time.perf_counter() + 30
        while len(lags) < LAG_RATE * LAG_SECONDS and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
        stop.set()
        shutdown.event.set()
        await asyncio.gather(*drains, relay_task)
        await producer.close()
        await db.dispose()
        lags.sort()
        p50 = lags[len(lags) // 2] * 1000
        p99 = lags[int(len(lags) * 0.99) - 1] * 1000
        print(
            f"(c) lag at {LAG_RATE} events/s for {LAG_SECONDS}s: {len(lags)} delivered, "
            f"p50 {p50:.0f} ms, p99 {p99:.0f} ms"
        )
    await pool.close()
    print(
        "targets: >= 2,000 events/s db-side; >= 0.8 of raw SQS; p99 lag < 1 s. "
        f"All processes share this machine's {os.cpu_count()} cores."
    )
    print(f"outbox: {db_rate:.0f} events/s db-side, {ratio:.2f} of raw SQS, p99 lag {p99:.0f} ms")


def main() -> None:
    stack = Stack()
    moto = None
    try:
        if not os.environ.get("AWS_ENDPOINT_URL"):
            moto = devstack.MotoServer(stack.workdir).start()
            os.environ.update(
                {
                    "AWS_ENDPOINT_URL": moto.url,
                    "AWS_ACCESS_KEY_ID": "test",
                    "AWS_SECRET_ACCESS_KEY": "test",
                }
            )
            stack.settings = Settings()
        tenant = uuid.uuid4()

        async def make_tenant() -> None:
            conn = await asyncpg.connect(stack.superuser_dsn)
            await conn.execute(
                "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, 'Bench')",
                tenant,
                f"bench-{tenant.hex[:8]}",
            )
            await conn.close()

        asyncio.run(make_tenant())
        asyncio.run(main_async(stack, tenant))
    finally:
        if moto is not None:
            moto.stop()
        stack.close()


if __name__ == "__main__":
    main()
