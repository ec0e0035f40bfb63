import json
import uuid

import pytest
from prometheus_client import REGISTRY

from app.events.envelope import Envelope
from app.events.outbox import add_event
from app.infra import aws
from app.infra.db import Database
from tests.factories import register_tenant
from workers.media import MediaHandler
from workers.runtime import Shutdown, SqsConsumer


@pytest.fixture
async def clients(settings):
    async with (
        aws.client(settings, "s3") as s3,
        aws.client(settings, "sqs") as sqs,
    ):
        yield s3, sqs


async def _asset(superuser_conn, tenant_id, key):
    media_id = uuid.uuid4()
    await superuser_conn.execute(
        "INSERT INTO media_assets (id, tenant_id, owner_id, content_type, s3_key) "
        "VALUES ($1, $2, $2, 'application/octet-stream', $3)",
        media_id,
        tenant_id,
        key,
    )
    return media_id


async def _uploaded_asset(s3, settings, superuser_conn, tenant_id):
    key = f"tenants/{tenant_id}/{uuid.uuid4()}.mp4"
    await s3.put_object(
        Bucket=settings.s3_bucket, Key=key, Body=b"\x00" * 2048, ContentType="video/mp4"
    )
    return await _asset(superuser_conn, tenant_id, key)


async def _media_job(db, tenant_id, media_id) -> Envelope:
    """A media.process event as the API stages it; returns what the relay would send."""
    async with db.transaction(tenant_id) as session:
        event = add_event(
            session,
            tenant_id=tenant_id,
            event_type="media.process",
            aggregate_type="media",
            aggregate_id=media_id,
            payload={"media_id": str(media_id)},
        )
    return Envelope(event.id, tenant_id, "media.process")


async def _run_until_idle(settings, s3, queue):
    worker_settings = settings.model_copy(update={"sqs_wait_seconds": 1})
    db = Database.from_settings(worker_settings)
    try:
        consumer = SqsConsumer(
            worker_settings,
            name="media",
            queue_url=queue,
            handle=MediaHandler(worker_settings, db, s3),
            shutdown=Shutdown(),
            stop_when_idle=True,
        )
        await consumer.run()  # returns once the queue is empty
    finally:
        await db.dispose()


async def _new_queue(sqs):
    return (await sqs.create_queue(QueueName=f"media-{uuid.uuid4().hex[:10]}"))["QueueUrl"]


def _rejected() -> float:
    labels = {"consumer": "media", "outcome": "rejected"}
    return REGISTRY.get_sample_value("courtside_worker_messages_total", labels) or 0.0


async def test_media_jobs_record_the_uploaded_object_once(
    client, settings, db, superuser_conn, clients
):
    s3, sqs = clients
    admin = await register_tenant(client)
    uploaded = await _uploaded_asset(s3, settings, superuser_conn, admin.tenant_id)
    missing = await _asset(
        superuser_conn, admin.tenant_id, f"tenants/{admin.tenant_id}/never-uploaded"
    )
    queue = await _new_queue(sqs)
    jobs = [await _media_job(db, admin.tenant_id, m) for m in (uploaded, missing)]
    for job in [*jobs, jobs[0]]:  # the first event is delivered twice
        await sqs.send_message(QueueUrl=queue, MessageBody=job.to_body())

    await _run_until_idle(settings, s3, queue)
    rows = {
        r["id"]: r
        for r in await superuser_conn.fetch(
            "SELECT id, status, size_bytes, content_type FROM media_assets WHERE id = ANY($1)",
            [uploaded, missing],
        )
    }
    assert (
        rows[uploaded]["status"],
        rows[uploaded]["size_bytes"],
        rows[uploaded]["content_type"],
    ) == ("ready", 2048, "video/mp4")
    assert rows[missing]["status"] == "failed"
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM processed_events WHERE consumer = 'media' AND tenant_id = $1",
            admin.tenant_id,
        )
        == 2
    )


async def test_forged_media_jobs_leave_another_tenants_asset_untouched(
    client, settings, db, superuser_conn, clients
):
    s3, sqs = clients
    attacker, victim = await register_tenant(client), await register_tenant(client)
    victims_asset = await _uploaded_asset(s3, settings, superuser_conn, victim.tenant_id)
    attackers_asset = await _uploaded_asset(s3, settings, superuser_conn, attacker.tenant_id)
    real = await _media_job(db, attacker.tenant_id, attackers_asset)
    queue = await _new_queue(sqs)
    payload = {"media_id": str(victims_asset), "payload": {"media_id": str(victims_asset)}}

    def forged(event_id, tenant_id, event_type):
        envelope = json.loads(Envelope(event_id, tenant_id, event_type).to_body())
        return json.dumps({**payload, **envelope})

    rejected_before = _rejected()
    # The attacker holds only sqs:SendMessage on the media queue.
    for body in (
        forged(uuid.uuid4(), victim.tenant_id, "media.process"),  # made-up event
        forged(real.id, victim.tenant_id, "media.process"),  # attacker's event, victim's tenant
        forged(real.id, attacker.tenant_id, "post.created"),  # a real event, another type
    ):
        await sqs.send_message(QueueUrl=queue, MessageBody=body)

    await _run_until_idle(settings, s3, queue)  # returns: neither crashed nor looping
    assert _rejected() - rejected_before == 3
    assert (
        await superuser_conn.fetchval(
            "SELECT status FROM media_assets WHERE id = $1", victims_asset
        )
        == "pending"
    )
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM processed_events WHERE tenant_id = ANY($1::uuid[])",
            [victim.tenant_id, attacker.tenant_id],
        )
        == 0
    )
