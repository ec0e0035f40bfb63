import json
import uuid

import aioboto3
import pytest

from app import aws
from app.db import Database
from tests.factories import register_tenant
from workers.media import MediaHandler
from workers.runtime import Shutdown, SqsConsumer


@pytest.fixture
async def clients(settings):
    session = aioboto3.Session()
    async with (
        session.client("s3", **aws.client_kwargs(settings)) as s3,
        session.client("sqs", **aws.client_kwargs(settings)) as sqs,
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


async def test_media_jobs_record_the_uploaded_object_once(
    client, settings, superuser_conn, clients
):
    s3, sqs = clients
    admin = await register_tenant(client)
    key = f"tenants/{admin.tenant_id}/{uuid.uuid4()}.mp4"
    await s3.put_object(
        Bucket=settings.s3_bucket, Key=key, Body=b"\x00" * 2048, ContentType="video/mp4"
    )
    uploaded = await _asset(superuser_conn, admin.tenant_id, key)
    missing = await _asset(superuser_conn, admin.tenant_id, key + ".missing")
    queue = (await sqs.create_queue(QueueName=f"media-{uuid.uuid4().hex[:10]}"))["QueueUrl"]
    events = [
        {
            "event_id": str(uuid.uuid4()),
            "tenant_id": str(admin.tenant_id),
            "type": "media.process",
            "media_id": str(m),
        }
        for m in (uploaded, missing)
    ]
    for body in [*events, events[0]]:  # the first event is delivered twice
        await sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))

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
