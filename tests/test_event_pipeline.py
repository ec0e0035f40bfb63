"""Outbox → SQS → consumers, against real PostgreSQL, moto's SQS server and aiosmtpd."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid

import asyncpg
import pytest
from prometheus_client import REGISTRY

from app.events.envelope import Envelope
from app.events.outbox import add_event
from app.infra import aws
from app.infra.db import TENANT_CONTEXT_SQL, asyncpg_dsn
from app.notifications.service import MESSAGES
from courtside.local.devstack import free_port
from tests.factories import create_club, create_post, register_tenant
from tests.relay_paused_after_publish import PAUSED
from workers.notifications import CONSUMER, NotificationsHandler
from workers.outbox_relay import OutboxRelay, Publisher
from workers.runtime import Shutdown, SqsConsumer

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def sqs(settings):
    async with aws.client(settings, "sqs") as client:
        yield client


@pytest.fixture
async def queue(sqs):
    """A fresh queue with a DLQ (2 receives) for this test: no leftovers from others."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    dlq = (await sqs.create_queue(QueueName=f"{name}-dlq"))["QueueUrl"]
    arn = (await sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"]))["Attributes"][
        "QueueArn"
    ]
    url = (
        await sqs.create_queue(
            QueueName=name,
            Attributes={
                "VisibilityTimeout": "30",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "2"}),
            },
        )
    )["QueueUrl"]
    return {"url": url, "dlq": dlq}


@pytest.fixture
async def empty_outbox(superuser_conn):
    """Events other tests left pending would be published too; start from an empty backlog."""
    await superuser_conn.execute(
        "UPDATE outbox_events SET status = 'sent', sent_at = now() WHERE status = 'pending'"
    )


@pytest.fixture
async def relay_pool(settings):
    pool = await asyncpg.create_pool(
        asyncpg_dsn(settings.relay_database_url), min_size=1, max_size=4
    )
    yield pool
    await pool.close()


@pytest.fixture
def pipeline_settings(settings, queue):
    return settings.model_copy(
        update={
            "sqs_notifications_queue_url": queue["url"],
            "sqs_wait_seconds": 1,
            "sqs_visibility_timeout": 30,
            "worker_shutdown_grace_seconds": 5,
        }
    )


async def _messages(sqs, url, *, delete=True, max_empty=2):
    received, empty = [], 0
    while empty < max_empty:
        batch = (
            await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        ).get("Messages", [])
        if not batch:
            empty += 1
            continue
        received += batch
        if delete:
            await sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
                ],
            )
    return received


async def _until(predicate, timeout=30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def _consume_until(settings, db, predicate, timeout=30.0):
    shutdown = Shutdown()
    consumer = SqsConsumer(
        settings,
        name=CONSUMER,
        queue_url=settings.sqs_notifications_queue_url,
        handle=NotificationsHandler(settings, db),
        shutdown=shutdown,
    )
    task = asyncio.create_task(consumer.run())
    try:
        await _until(predicate, timeout)
    finally:
        shutdown.event.set()
        await task


def _relay(settings, sqs, pool):
    return OutboxRelay(
        settings, Publisher(sqs, {"notifications": settings.sqs_notifications_queue_url}), pool
    )


async def _send(sqs, url, body):
    await sqs.send_message(QueueUrl=url, MessageBody=body)


async def _envelope_of(superuser_conn, post_id) -> Envelope:
    row = await superuser_conn.fetchrow(
        "SELECT id, tenant_id, event_type FROM outbox_events "
        "WHERE aggregate_id = $1 AND event_type = 'post.created'",
        post_id,
    )
    return Envelope(row["id"], row["tenant_id"], row["event_type"])


async def _stage_as_runtime_role(conn, tenant_id, event_type, payload) -> uuid.UUID:
    """What the runtime role (or a tenant's own database role) can write in its tenant:
    an outbox row with any payload at all."""
    async with conn.transaction():
        await conn.execute(TENANT_CONTEXT_SQL, str(tenant_id), "")
        return await conn.fetchval(
            "INSERT INTO outbox_events (tenant_id, event_type, aggregate_type, aggregate_id, "
            "payload) VALUES ($1, $2, 'x', 'x', $3::jsonb) RETURNING id",
            tenant_id,
            event_type,
            json.dumps(payload),
        )


def _rejected() -> float:
    labels = {"consumer": CONSUMER, "outcome": "rejected"}
    return REGISTRY.get_sample_value("courtside_worker_messages_total", labels) or 0.0


async def _queue_empty(sqs, url) -> bool:
    counts = (
        await sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    )["Attributes"]
    return all(int(v) == 0 for v in counts.values())


@pytest.fixture
async def club(client):
    return await create_club(client, athletes=("athlete", "teammate"), others=())


def _post_mail_recipients(services) -> set[str]:
    # Only the post notifications' mails: the same addresses also got their invitations.
    subject = MESSAGES["post.created"][0]
    return {m["To"] for m in services.smtp.messages if m["Subject"] == subject}


async def _notifications(client, account):
    response = await client.get("/notifications", headers=account.headers)
    assert response.status_code == 200
    return response.json()["items"]


async def test_a_post_becomes_notifications_and_emails(
    client, club, db, services, sqs, pipeline_settings, relay_pool, empty_outbox
):
    post = await create_post(client, club["athlete"], club["space"])
    relay = _relay(pipeline_settings, sqs, relay_pool)
    assert await relay.drain() == 1
    expected = {club["coach"].email, club["teammate"].email}

    async def delivered():
        return expected <= _post_mail_recipients(services)

    await _consume_until(pipeline_settings, db, delivered)
    for who in ("coach", "teammate"):
        items = await _notifications(client, club[who])
        assert [(n["kind"], n["data"]["post_id"]) for n in items] == [("post.created", post["id"])]
    assert await _notifications(client, club["athlete"]) == []  # not the author
    assert await _messages(sqs, pipeline_settings.sqs_notifications_queue_url) == []


async def test_email_preference_is_honoured(
    client, club, db, services, sqs, pipeline_settings, relay_pool, empty_outbox, superuser_conn
):
    await superuser_conn.execute(
        "UPDATE users SET email_notifications = false WHERE id = $1", club["teammate"].user_id
    )
    await create_post(client, club["athlete"], club["space"])
    relay = _relay(pipeline_settings, sqs, relay_pool)
    await relay.drain()

    async def coach_mailed():
        return club["coach"].email in _post_mail_recipients(services)

    await _consume_until(pipeline_settings, db, coach_mailed)
    assert len(await _notifications(client, club["teammate"])) == 1  # in-app still
    assert club["teammate"].email not in _post_mail_recipients(services)


async def test_comment_notifies_the_post_author(
    client, club, db, sqs, pipeline_settings, relay_pool, empty_outbox
):
    post = await create_post(client, club["athlete"], club["space"])
    await client.post(
        f"/posts/{post['id']}/comments",
        headers=club["coach"].headers,
        json={"body": "Bend your knees"},
    )
    relay = _relay(pipeline_settings, sqs, relay_pool)
    assert await relay.drain() == 2

    async def author_notified():
        return any(
            n["kind"] == "comment.created" for n in await _notifications(client, club["athlete"])
        )

    await _consume_until(pipeline_settings, db, author_notified)


async def test_a_comment_at_a_moment_of_a_video_notifies_its_owner(
    client, club, db, sqs, pipeline_settings, relay_pool, empty_outbox, superuser_conn
):
    athlete, coach = club["athlete"], club["coach"]
    media_id = uuid.uuid4()
    await superuser_conn.execute(
        "INSERT INTO media_assets (id, tenant_id, owner_id, status, content_type, s3_key, "
        "duration_ms) VALUES ($1, $2, $3, 'ready', 'video/mp4', 'k', 5000)",
        media_id,
        athlete.tenant_id,
        athlete.user_id,
    )
    shared = await client.post(
        "/posts",
        headers=athlete.headers,
        json={"space_id": club["space"], "body": "swing", "media_ids": [str(media_id)]},
    )
    assert shared.status_code == 201
    commented = await client.post(
        f"/media/{media_id}/comments",
        headers=coach.headers,
        json={"at_ms": 1200, "body": "Elbow in"},
    )
    assert commented.status_code == 201
    relay = _relay(pipeline_settings, sqs, relay_pool)
    assert await relay.drain() == 2  # post.created, media.comment.created

    async def owner_notified():
        kinds = [n["kind"] for n in await _notifications(client, athlete)]
        return "media.comment.created" in kinds

    await _consume_until(pipeline_settings, db, owner_notified)
    # The commenter hears nothing of their own comment.
    assert "media.comment.created" not in [n["kind"] for n in await _notifications(client, coach)]


async def test_relay_killed_after_publishing_publishes_again_and_effect_applies_once(
    client, club, db, sqs, services, pipeline_settings, relay_pool, empty_outbox, superuser_conn
):
    post = await create_post(client, club["athlete"], club["space"])
    env = {
        **os.environ,
        **services.env,
        "SQS_NOTIFICATIONS_QUEUE_URL": pipeline_settings.sqs_notifications_queue_url,
        "METRICS_PORT": str(free_port()),
        "LOG_LEVEL": "WARNING",
    }
    relay_process = subprocess.Popen(
        [sys.executable, "-m", "tests.relay_paused_after_publish"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(relay_process.stdout.readline), 60)
        assert PAUSED in line
    finally:
        relay_process.send_signal(signal.SIGKILL)
        relay_process.wait()
    status = await superuser_conn.fetchval(
        "SELECT status FROM outbox_events WHERE aggregate_id = $1", post["id"]
    )
    assert status == "pending"  # the mark never committed
    relay = _relay(pipeline_settings, sqs, relay_pool)
    assert await relay.drain() == 1  # published a second time

    async def both_copies_consumed():
        attrs = await sqs.get_queue_attributes(
            QueueUrl=pipeline_settings.sqs_notifications_queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        counts = attrs["Attributes"]
        return (
            int(counts["ApproximateNumberOfMessages"]) == 0
            and int(counts["ApproximateNumberOfMessagesNotVisible"]) == 0
            and len(await _notifications(client, club["coach"])) == 1
        )

    await _consume_until(pipeline_settings, db, both_copies_consumed)
    assert len(await _notifications(client, club["coach"])) == 1
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM processed_events WHERE consumer = 'notifications' "
            "AND tenant_id = $1",
            club["admin"].tenant_id,
        )
        == 1
    )


async def test_two_relays_in_parallel_publish_every_event_once(
    db, sqs, pipeline_settings, empty_outbox, client, superuser_conn
):
    admin = await register_tenant(client)
    async with db.transaction(admin.tenant_id) as session:
        events = [
            add_event(
                session,
                tenant_id=admin.tenant_id,
                event_type="post.created",
                aggregate_type="post",
                aggregate_id=uuid.uuid4(),
                payload={"space_id": str(uuid.uuid4()), "n": i},
            )
            for i in range(120)
        ]
    expected = {str(e.id) for e in events}
    settings = pipeline_settings.model_copy(update={"outbox_batch_size": 10})
    pools = [
        await asyncpg.create_pool(asyncpg_dsn(settings.relay_database_url), min_size=1, max_size=2)
        for _ in range(2)
    ]
    try:
        publisher = Publisher(sqs, {"notifications": settings.sqs_notifications_queue_url})
        sent = await asyncio.gather(*(OutboxRelay(settings, publisher, p).drain() for p in pools))
    finally:
        for pool in pools:
            await pool.close()
    assert sum(sent) == 120 and all(s > 0 for s in sent)  # both took part
    received = [
        json.loads(m["Body"])["event_id"]
        for m in await _messages(sqs, settings.sqs_notifications_queue_url)
    ]
    assert sorted(received) == sorted(expected)  # every event, none twice
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM outbox_events WHERE tenant_id = $1 AND status = 'sent'",
            admin.tenant_id,
        )
        == 120
    )


async def test_failed_publishes_back_off_and_end_dead(
    db, sqs, settings, empty_outbox, client, superuser_conn, relay_pool
):
    admin = await register_tenant(client)
    async with db.transaction(admin.tenant_id) as session:
        event = add_event(
            session,
            tenant_id=admin.tenant_id,
            event_type="post.created",
            aggregate_type="post",
            aggregate_id=uuid.uuid4(),
            payload={},
        )
    broken = settings.model_copy(update={"outbox_max_attempts": 2})
    missing_queue = settings.sqs_notifications_queue_url + "-does-not-exist"
    relay = OutboxRelay(broken, Publisher(sqs, {"notifications": missing_queue}), relay_pool)
    first = await relay.relay_batch()
    assert (first.sent, first.failed) == (0, 1)
    row = await superuser_conn.fetchrow(
        "SELECT status, attempts, available_at > now() AS later FROM outbox_events WHERE id = $1",
        event.id,
    )
    assert dict(row) == {"status": "pending", "attempts": 1, "later": True}
    await superuser_conn.execute(
        "UPDATE outbox_events SET available_at = now() WHERE id = $1", event.id
    )
    await relay.relay_batch()
    assert (
        await superuser_conn.fetchval("SELECT status FROM outbox_events WHERE id = $1", event.id)
        == "dead"
    )


# --- Forged and misdirected events: the envelope comes from the outbox row only -------


@pytest.mark.parametrize("key", ["tenant_id", "event_id", "type"])
async def test_add_event_refuses_a_payload_carrying_an_envelope_key(
    client, db, superuser_conn, key
):
    attacker = await register_tenant(client)
    claims = {"tenant_id": str(uuid.uuid4()), "event_id": str(uuid.uuid4()), "type": "x"}
    with pytest.raises(ValueError, match="envelope keys"):
        async with db.transaction(attacker.tenant_id) as session:
            add_event(
                session,
                tenant_id=attacker.tenant_id,
                event_type="post.created",
                aggregate_type="post",
                aggregate_id=uuid.uuid4(),
                payload={"space_id": str(uuid.uuid4()), key: claims[key]},
            )
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM outbox_events WHERE tenant_id = $1", attacker.tenant_id
        )
        == 0
    )


async def test_the_relay_sends_the_rows_envelope_whatever_the_payload_claims(
    client, sqs, pipeline_settings, relay_pool, empty_outbox, runtime_conn
):
    attacker, victim = await register_tenant(client), await register_tenant(client)
    claims = {"tenant_id": str(victim.tenant_id), "event_id": str(uuid.uuid4()), "type": "y"}
    event_id = await _stage_as_runtime_role(
        runtime_conn, attacker.tenant_id, "post.created", claims
    )
    assert await _relay(pipeline_settings, sqs, relay_pool).drain() == 1
    [message] = await _messages(sqs, pipeline_settings.sqs_notifications_queue_url)
    assert json.loads(message["Body"]) == {
        "event_id": str(event_id),
        "type": "post.created",
        "tenant_id": str(attacker.tenant_id),
    }


async def test_an_event_whose_payload_names_another_tenant_acts_only_in_its_own(
    client, db, sqs, pipeline_settings, relay_pool, empty_outbox, runtime_conn, superuser_conn
):
    attacker = await register_tenant(client)
    victim = await create_club(client, others=())
    victim_tenant = victim["admin"].tenant_id
    event_id = await _stage_as_runtime_role(
        runtime_conn,
        attacker.tenant_id,
        "post.created",
        {
            "tenant_id": str(victim_tenant),
            "event_id": str(uuid.uuid4()),
            "type": "post.created",
            "space_id": victim["space"],
            "author_id": str(attacker.user_id),
        },
    )
    assert await _relay(pipeline_settings, sqs, relay_pool).drain() == 1

    async def applied_in_the_attackers_tenant():
        return await superuser_conn.fetchval(
            "SELECT count(*) FROM processed_events WHERE tenant_id = $1 AND event_id = $2",
            attacker.tenant_id,
            event_id,
        )

    await _consume_until(pipeline_settings, db, applied_in_the_attackers_tenant)
    for table in ("notifications", "processed_events"):
        assert (
            await superuser_conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE tenant_id = $1",
                victim_tenant,
            )
            == 0
        )
    for who in ("coach", "athlete"):
        assert await _notifications(client, victim[who]) == []


async def test_forged_messages_are_refused_counted_and_deleted_and_the_worker_goes_on(
    client, db, sqs, queue, pipeline_settings, relay_pool, empty_outbox, superuser_conn
):
    victim = await create_club(client, others=())
    other = await create_club(client, others=())
    victim_tenant, other_tenant = victim["admin"].tenant_id, other["admin"].tenant_id
    real = await _envelope_of(
        superuser_conn, (await create_post(client, other["athlete"], other["space"]))["id"]
    )
    # The attacker holds only sqs:SendMessage. Each body also carries a payload naming the
    # victim's space, in both the old (top-level) and a nested shape, for a consumer that
    # would read it.
    lure = {"space_id": victim["space"], "author_id": str(uuid.uuid4())}
    lure |= {"post_author_id": str(other["coach"].user_id), "payload": dict(lure)}

    def forged(event_id, tenant_id, event_type):
        envelope = json.loads(Envelope(event_id, tenant_id, event_type).to_body())
        return json.dumps({**lure, **envelope})

    rejected_before = _rejected()
    for body in (
        forged(uuid.uuid4(), victim_tenant, "post.created"),  # made-up event
        forged(real.id, victim_tenant, "post.created"),  # another tenant's event replayed
        forged(real.id, other_tenant, "comment.created"),  # a real event, another type
        "{not json",
        json.dumps({"event_id": "nope", "tenant_id": str(victim_tenant), "type": "x"}),
    ):
        await _send(sqs, queue["url"], body)
    # Afterwards, real events of both tenants, through the relay.
    legit_post = await create_post(client, victim["athlete"], victim["space"])
    legit = await _envelope_of(superuser_conn, legit_post["id"])
    assert await _relay(pipeline_settings, sqs, relay_pool).drain() == 2

    async def forged_refused_and_real_ones_applied():
        return (
            _rejected() - rejected_before == 5
            and len(await _notifications(client, victim["coach"])) == 1
            and len(await _notifications(client, other["coach"])) == 1
            and await _queue_empty(sqs, queue["url"])
        )

    await _consume_until(pipeline_settings, db, forged_refused_and_real_ones_applied)
    notified = await superuser_conn.fetch(
        "SELECT tenant_id, event_id, kind FROM notifications WHERE tenant_id = ANY($1::uuid[])",
        [victim_tenant, other_tenant],
    )
    assert sorted((r["tenant_id"], r["event_id"], r["kind"]) for r in notified) == sorted(
        [(victim_tenant, legit.id, "post.created"), (other_tenant, real.id, "post.created")]
    )
    applied = await superuser_conn.fetch(
        "SELECT tenant_id, event_id FROM processed_events WHERE tenant_id = ANY($1::uuid[])",
        [victim_tenant, other_tenant],
    )
    assert sorted((r["tenant_id"], r["event_id"]) for r in applied) == sorted(
        [(victim_tenant, legit.id), (other_tenant, real.id)]
    )
    assert await _queue_empty(sqs, queue["dlq"])  # deleted, not retried into the DLQ


async def test_poison_message_goes_to_the_dlq_without_blocking_others(
    client, club, db, sqs, queue, pipeline_settings, superuser_conn
):
    settings = pipeline_settings.model_copy(update={"sqs_visibility_timeout": 1})
    tenant_id = club["admin"].tenant_id
    # A real event whose handler fails every time: no notification exists for its type.
    async with db.transaction(tenant_id) as session:
        poison = add_event(
            session,
            tenant_id=tenant_id,
            event_type="no.such.event",
            aggregate_type="x",
            aggregate_id="x",
            payload={},
        )
    await _send(sqs, queue["url"], Envelope(poison.id, tenant_id, "no.such.event").to_body())
    post = await create_post(client, club["athlete"], club["space"])
    good = await _envelope_of(superuser_conn, post["id"])
    await _send(sqs, queue["url"], good.to_body())

    async def coach_notified():
        return len(await _notifications(client, club["coach"])) == 1

    async def poison_in_dlq():
        attrs = await sqs.get_queue_attributes(
            QueueUrl=queue["dlq"], AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(attrs["Attributes"]["ApproximateNumberOfMessages"]) == 1

    async def both():
        return await coach_notified() and await poison_in_dlq()

    await _consume_until(settings, db, both, timeout=60)
    dead = await _messages(sqs, queue["dlq"])
    assert [json.loads(m["Body"])["event_id"] for m in dead] == [str(poison.id)]


async def _shut_down_during_a_job(settings, queue, sqs, *, job_seconds, grace_seconds):
    """Start a consumer, send one message, SIGTERM-equivalent once its job has started;
    returns (the event id, the ids whose job finished)."""
    settings = settings.model_copy(
        update={"sqs_wait_seconds": 1, "worker_shutdown_grace_seconds": grace_seconds}
    )
    started, finished = asyncio.Event(), []

    async def job(event: Envelope) -> None:
        started.set()
        await asyncio.sleep(job_seconds)
        finished.append(event.id)

    shutdown = Shutdown()
    consumer = SqsConsumer(
        settings, name="test", queue_url=queue["url"], handle=job, shutdown=shutdown
    )
    event_id = uuid.uuid4()
    body = {"event_id": str(event_id), "tenant_id": str(uuid.uuid4()), "type": "x"}
    await sqs.send_message(QueueUrl=queue["url"], MessageBody=json.dumps(body))
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(started.wait(), 30)
    shutdown.event.set()  # what SIGTERM does
    await asyncio.wait_for(task, 30)
    return event_id, finished


async def test_shutdown_lets_a_running_job_finish(settings, queue, sqs):
    event_id, finished = await _shut_down_during_a_job(
        settings, queue, sqs, job_seconds=1.5, grace_seconds=10
    )
    assert finished == [event_id]
    assert await _messages(sqs, queue["url"], max_empty=1) == []  # deleted, not redelivered


async def test_shutdown_releases_a_job_that_outlives_the_grace_period(settings, queue, sqs):
    event_id, finished = await _shut_down_during_a_job(
        settings, queue, sqs, job_seconds=3600, grace_seconds=0.2
    )
    assert finished == []
    # Visible again at once (not after the 30 s visibility timeout): not lost.
    again = await _messages(sqs, queue["url"], max_empty=1)
    assert [json.loads(m["Body"])["event_id"] for m in again] == [str(event_id)]


async def test_worker_process_exits_cleanly_on_sigterm(services, pipeline_settings):
    port = free_port()
    env = {
        **os.environ,
        **services.env,
        "METRICS_PORT": str(port),
        "SQS_NOTIFICATIONS_QUEUE_URL": pipeline_settings.sqs_notifications_queue_url,
        "SQS_WAIT_SECONDS": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "courtside.cli", "worker", "notifications"], env=env
    )
    import httpx

    try:

        async def serving():
            try:
                async with httpx.AsyncClient() as c:
                    health = await c.get(f"http://127.0.0.1:{port}/healthz")
                    metrics = await c.get(f"http://127.0.0.1:{port}/metrics")
                return health.status_code == 200 and "courtside_worker" in metrics.text
            except httpx.HTTPError:
                return False

        await _until(serving, 60)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
    finally:
        if process.poll() is None:
            process.kill()
