"""The media worker end to end: an original in S3 (moto), its asset `processing` and its
media.process event in the outbox, as finalize leaves them; the real consumer, the real
ffmpeg. What the asset records, what lands in S3, what the tenant's storage counts, which
failures are retried, what SIGTERM leaves, and forged messages refused."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from prometheus_client import REGISTRY

from app.events.envelope import Envelope
from app.events.outbox import add_event
from app.infra import aws
from courtside.local.devstack import free_port
from tests.factories import register_tenant
from tests.media_clips import (
    ended,
    ffmpeg_processes,
    make_clip,
    make_garbage,
    make_image,
    probe,
    top_level_boxes,
    wait_for_transcode,
)
from tests.media_uploads import media_worker_settings, run_media_worker_until_idle

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def clients(settings):
    async with aws.client(settings, "s3") as s3, aws.client(settings, "sqs") as sqs:
        yield s3, sqs


@pytest.fixture
async def queue(clients):
    _, sqs = clients
    return (await sqs.create_queue(QueueName=f"media-{uuid.uuid4().hex[:10]}"))["QueueUrl"]


async def _used_bytes(conn, tenant_id) -> int:
    used = await conn.fetchval(
        "SELECT used_bytes FROM tenant_storage WHERE tenant_id = $1", tenant_id
    )
    return used or 0


async def _finalized_asset(s3, settings, conn, account, path, content_type, status="processing"):
    """An asset as finalize leaves it: the original in S3 under the asset's prefix, the
    row `processing`, its bytes counted in the asset and the tenant's storage."""
    media_id = uuid.uuid4()
    key = f"tenants/{account.tenant_id}/media/{media_id}/original"
    data = await asyncio.to_thread(Path(path).read_bytes)
    await s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=data, ContentType=content_type)
    await conn.execute(
        "INSERT INTO media_assets (id, tenant_id, owner_id, status, filename, content_type, "
        "size_bytes, s3_key, stored_bytes, finalized_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7, now())",
        media_id,
        account.tenant_id,
        account.user_id,
        status,
        Path(path).name,
        content_type,
        len(data),
        key,
    )
    await conn.execute(
        "INSERT INTO tenant_storage (tenant_id, used_bytes) VALUES ($1, $2) "
        "ON CONFLICT (tenant_id) DO UPDATE SET used_bytes = tenant_storage.used_bytes + $2",
        account.tenant_id,
        len(data),
    )
    return media_id


async def _media_job(db, tenant_id, media_id) -> Envelope:
    """A media.process event as finalize stages it; returns what the relay would send."""
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


async def _send_job(db, sqs, queue, tenant_id, media_id) -> Envelope:
    job = await _media_job(db, tenant_id, media_id)
    await sqs.send_message(QueueUrl=queue, MessageBody=job.to_body())
    return job


async def _asset(conn, media_id):
    row = await conn.fetchrow("SELECT * FROM media_assets WHERE id = $1", media_id)
    if row is None:
        return None
    asset = dict(row)
    renditions = asset["renditions"]
    asset["renditions"] = json.loads(renditions) if isinstance(renditions, str) else renditions
    return asset


async def _keys(s3, settings, tenant_id, media_id) -> set[str]:
    listed = await s3.list_objects_v2(
        Bucket=settings.s3_bucket, Prefix=f"tenants/{tenant_id}/media/{media_id}/"
    )
    return {o["Key"] for o in listed.get("Contents", [])}


async def _download(s3, settings, key, dest: Path) -> Path:
    response = await s3.get_object(Bucket=settings.s3_bucket, Key=key)
    async with response["Body"] as body:
        data = await body.read()
    await asyncio.to_thread(dest.write_bytes, data)
    return dest


async def _markers(conn, tenant_id) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM processed_events WHERE consumer = 'media' AND tenant_id = $1",
        tenant_id,
    )


async def _queue_depth(sqs, queue) -> int:
    attributes = (
        await sqs.get_queue_attributes(
            QueueUrl=queue,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


async def _until_visible(sqs, queue, timeout=60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        attributes = await sqs.get_queue_attributes(
            QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"]
        )
        if int(attributes["Attributes"]["ApproximateNumberOfMessages"]):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the message never became visible again")


def _messages(outcome: str) -> float:
    labels = {"consumer": "media", "outcome": outcome}
    return REGISTRY.get_sample_value("courtside_worker_messages_total", labels) or 0.0


async def test_a_clip_becomes_ready_with_a_720p_rendition_and_a_poster_counted_in_storage(
    client, settings, db, superuser_conn, clients, queue, tmp_path
):
    s3, sqs = clients
    admin = await register_tenant(client)
    clip = make_clip(tmp_path / "swing.mp4", 3, 1280, 960)
    media_id = await _finalized_asset(s3, settings, superuser_conn, admin, clip, "video/mp4")
    used_before = await _used_bytes(superuser_conn, admin.tenant_id)
    stored_before = (await _asset(superuser_conn, media_id))["stored_bytes"]
    await _send_job(db, sqs, queue, admin.tenant_id, media_id)

    await run_media_worker_until_idle(media_worker_settings(settings, tmp_path), s3, queue)

    asset = await _asset(superuser_conn, media_id)
    assert asset["status"] == "ready", asset
    assert abs(asset["duration_ms"] - 3000) <= 200
    assert (asset["width"], asset["height"]) == (1280, 960)
    assert (asset["video_codec"], asset["audio_codec"]) == ("h264", "aac")
    assert (asset["error_code"], asset["error_reason"]) == (None, None)
    assert asset["processed_at"] is not None
    video, poster = asset["renditions"]
    prefix = f"tenants/{admin.tenant_id}/media/{media_id}/"
    assert video["name"] == "720p" and video["content_type"] == "video/mp4"
    assert poster["name"] == "poster" and poster["content_type"] == "image/jpeg"
    assert asset["thumbnail_key"] == poster["key"]
    assert all(r["key"].startswith(prefix) for r in asset["renditions"])
    assert await _keys(s3, settings, admin.tenant_id, media_id) == {
        asset["s3_key"],
        video["key"],
        poster["key"],
    }

    played = await _download(s3, settings, video["key"], tmp_path / "played.mp4")
    streams = {s["codec_type"]: s for s in probe(played)["streams"]}
    assert (streams["video"]["codec_name"], streams["audio"]["codec_name"]) == ("h264", "aac")
    assert (streams["video"]["width"], streams["video"]["height"]) == (960, 720)
    assert (video["width"], video["height"]) == (960, 720)
    assert abs(float(probe(played)["format"]["duration"]) - 3.0) <= 0.2
    boxes = top_level_boxes(played)
    assert boxes.index("moov") < boxes.index("mdat")  # +faststart
    still = await _download(s3, settings, poster["key"], tmp_path / "poster.jpg")
    assert still.read_bytes()[:3] == b"\xff\xd8\xff"

    sizes = [
        (await s3.head_object(Bucket=settings.s3_bucket, Key=r["key"]))["ContentLength"]
        for r in asset["renditions"]
    ]
    assert sizes == [r["size_bytes"] for r in asset["renditions"]]
    assert await _used_bytes(superuser_conn, admin.tenant_id) - used_before == sum(sizes)
    assert asset["stored_bytes"] - stored_before == sum(sizes)
    assert await _markers(superuser_conn, admin.tenant_id) == 1
    assert list((tmp_path / "scratch").iterdir()) == []  # nothing left on the scratch volume


async def test_an_image_gets_a_thumbnail_only(
    client, settings, db, superuser_conn, clients, queue, tmp_path
):
    s3, sqs = clients
    admin = await register_tenant(client)
    image = make_image(tmp_path / "grip.png", 1600, 1200)
    media_id = await _finalized_asset(s3, settings, superuser_conn, admin, image, "image/png")
    used_before = await _used_bytes(superuser_conn, admin.tenant_id)
    await _send_job(db, sqs, queue, admin.tenant_id, media_id)

    await run_media_worker_until_idle(media_worker_settings(settings, tmp_path), s3, queue)

    asset = await _asset(superuser_conn, media_id)
    assert asset["status"] == "ready", asset
    assert (asset["width"], asset["height"], asset["duration_ms"]) == (1600, 1200, None)
    assert (asset["video_codec"], asset["audio_codec"]) == ("png", None)
    [thumbnail] = asset["renditions"]
    assert (thumbnail["name"], thumbnail["content_type"]) == ("thumbnail", "image/jpeg")
    assert (thumbnail["width"], thumbnail["height"]) == (720, 540)
    assert asset["thumbnail_key"] == thumbnail["key"]
    got = await _download(s3, settings, thumbnail["key"], tmp_path / "thumb.jpg")
    assert got.read_bytes()[:3] == b"\xff\xd8\xff"
    assert max(probe(got)["streams"][0]["width"], probe(got)["streams"][0]["height"]) <= 720
    used = await _used_bytes(superuser_conn, admin.tenant_id)
    assert used - used_before == thumbnail["size_bytes"] == got.stat().st_size


async def test_a_corrupt_file_fails_with_a_reason_and_is_not_retried(
    client, settings, db, superuser_conn, clients, queue, tmp_path
):
    s3, sqs = clients
    admin = await register_tenant(client)
    garbage = make_garbage(tmp_path / "swing.mp4")
    media_id = await _finalized_asset(s3, settings, superuser_conn, admin, garbage, "video/mp4")
    used_before = await _used_bytes(superuser_conn, admin.tenant_id)
    handled, failed = _messages("handled"), _messages("failed")
    await _send_job(db, sqs, queue, admin.tenant_id, media_id)

    await run_media_worker_until_idle(media_worker_settings(settings, tmp_path), s3, queue)

    asset = await _asset(superuser_conn, media_id)
    assert asset["status"] == "failed"
    assert asset["error_code"] == "unreadable_media"
    assert "Invalid data" in asset["error_reason"]
    assert (asset["renditions"], asset["thumbnail_key"]) == ([], None)
    # Handled once and deleted: not left to come back, nor to reach a dead-letter queue.
    assert (_messages("handled") - handled, _messages("failed") - failed) == (1, 0)
    assert await _queue_depth(sqs, queue) == 0
    assert await _markers(superuser_conn, admin.tenant_id) == 1
    assert await _keys(s3, settings, admin.tenant_id, media_id) == {asset["s3_key"]}
    assert await _used_bytes(superuser_conn, admin.tenant_id) == used_before


async def test_a_transient_s3_error_leaves_the_job_to_be_retried(
    client, settings, db, superuser_conn, clients, queue, tmp_path
):
    s3, sqs = clients
    admin = await register_tenant(client)
    clip = make_clip(tmp_path / "swing.mp4", 1, 320, 240)
    media_id = await _finalized_asset(s3, settings, superuser_conn, admin, clip, "video/mp4")
    await _send_job(db, sqs, queue, admin.tenant_id, media_id)
    # S3 refusing connections: a port nothing listens on. (One attempt per call: the
    # client's own retries of it would only make the test slower.)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    failed = _messages("failed")
    # The message stays invisible for a while after the failure: the run stops first.
    first = media_worker_settings(settings, tmp_path, sqs_visibility_timeout=4)
    async with get_session().create_client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{closed_port}",
        region_name=settings.aws_region,
        aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106 - moto's
        config=AioConfig(retries={"mode": "standard", "max_attempts": 1}),
    ) as broken_s3:
        await run_media_worker_until_idle(first, broken_s3, queue)

    assert _messages("failed") - failed == 1
    asset = await _asset(superuser_conn, media_id)
    assert (asset["status"], asset["renditions"]) == ("processing", [])
    assert await _markers(superuser_conn, admin.tenant_id) == 0

    # Once visible again (its visibility timeout over), the same message is processed.
    await _until_visible(sqs, queue)
    await run_media_worker_until_idle(media_worker_settings(settings, tmp_path), s3, queue)
    assert (await _asset(superuser_conn, media_id))["status"] == "ready"
    assert _messages("failed") - failed == 1


async def test_a_job_is_applied_once_however_often_it_arrives(
    client, settings, db, superuser_conn, clients, queue, tmp_path
):
    """Two deliveries of one event, taken at once: one records its renditions, the other
    records nothing and deletes the objects it uploaded (keys of its own attempt)."""
    s3, sqs = clients
    admin = await register_tenant(client)
    clip = make_clip(tmp_path / "swing.mp4", 1, 320, 240)
    media_id = await _finalized_asset(s3, settings, superuser_conn, admin, clip, "video/mp4")
    used_before = await _used_bytes(superuser_conn, admin.tenant_id)
    job = await _media_job(db, admin.tenant_id, media_id)
    for _ in range(2):
        await sqs.send_message(QueueUrl=queue, MessageBody=job.to_body())

    await run_media_worker_until_idle(media_worker_settings(settings, tmp_path), s3, queue)

    asset = await _asset(superuser_conn, media_id)
    assert asset["status"] == "ready"
    recorded = {r["key"] for r in asset["renditions"]}
    assert await _keys(s3, settings, admin.tenant_id, media_id) == {asset["s3_key"], *recorded}
    used = await _used_bytes(superuser_conn, admin.tenant_id)
    assert used - used_before == sum(r["size_bytes"] for r in asset["renditions"])
    assert await _markers(superuser_conn, admin.tenant_id) == 1
    assert await _queue_depth(sqs, queue) == 0


async def test_assets_already_processed_or_deleted_are_left_as_they_are(
    client, settings, db, superuser_conn, clients, queue, tmp_path
):
    s3, sqs = clients
    admin = await register_tenant(client)
    clip = make_clip(tmp_path / "swing.mp4", 1, 320, 240)
    ready = await _finalized_asset(
        s3, settings, superuser_conn, admin, clip, "video/mp4", status="ready"
    )
    deleted = uuid.uuid4()  # its event outlived it
    failed = _messages("failed")
    for media_id in (ready, deleted):
        await _send_job(db, sqs, queue, admin.tenant_id, media_id)

    await run_media_worker_until_idle(media_worker_settings(settings, tmp_path), s3, queue)

    asset = await _asset(superuser_conn, ready)
    assert (asset["status"], asset["renditions"], asset["processed_at"]) == ("ready", [], None)
    assert await _keys(s3, settings, admin.tenant_id, ready) == {asset["s3_key"]}
    assert await _asset(superuser_conn, deleted) is None
    assert _messages("failed") == failed
    assert await _queue_depth(sqs, queue) == 0


def _consume_in_background(worker_settings, s3, queue) -> asyncio.Task:
    return asyncio.create_task(run_media_worker_until_idle(worker_settings, s3, queue))


async def test_a_transcode_outlasting_the_visibility_timeout_keeps_its_message_hidden(
    client, settings, db, superuser_conn, clients, queue, tmp_path
):
    """The consumer extends the message's visibility for as long as the job runs: while a
    transcode is held up for three visibility timeouts, no other consumer receives it."""
    s3, sqs = clients
    admin = await register_tenant(client)
    clip = make_clip(tmp_path / "swing.mp4", 20, 320, 240)
    media_id = await _finalized_asset(s3, settings, superuser_conn, admin, clip, "video/mp4")
    await _send_job(db, sqs, queue, admin.tenant_id, media_id)
    timeout = 2
    # A slower preset than the other tests': a wider window to catch the transcode in.
    worker = media_worker_settings(
        settings, tmp_path, sqs_visibility_timeout=timeout, media_video_preset="slow"
    )
    consuming = _consume_in_background(worker, s3, queue)
    stolen = []
    try:
        running = await wait_for_transcode(os.getpid())
        for pid in running:
            os.kill(pid, signal.SIGSTOP)  # the transcode makes no progress meanwhile
        try:
            loop = asyncio.get_running_loop()
            until = loop.time() + 3 * timeout
            while loop.time() < until:
                got = await sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)
                stolen += got.get("Messages", [])
            assert (await _asset(superuser_conn, media_id))["status"] == "processing"
        finally:
            for pid in running:
                os.kill(pid, signal.SIGCONT)
        await asyncio.wait_for(consuming, 120)
    finally:
        consuming.cancel()
    assert stolen == []
    assert (await _asset(superuser_conn, media_id))["status"] == "ready"
    assert await _queue_depth(sqs, queue) == 0


async def test_an_asset_deleted_during_its_transcode_keeps_no_renditions(
    client, settings, db, superuser_conn, clients, queue, tmp_path
):
    s3, sqs = clients
    admin = await register_tenant(client)
    clip = make_clip(tmp_path / "swing.mp4", 20, 320, 240)
    used_before_upload = await _used_bytes(superuser_conn, admin.tenant_id)
    media_id = await _finalized_asset(s3, settings, superuser_conn, admin, clip, "video/mp4")
    await _send_job(db, sqs, queue, admin.tenant_id, media_id)
    worker = media_worker_settings(settings, tmp_path, media_video_preset="slow")
    consuming = _consume_in_background(worker, s3, queue)
    try:
        running = await wait_for_transcode(os.getpid())
        for pid in running:
            os.kill(pid, signal.SIGSTOP)
        try:
            deleted = await client.delete(f"/media/{media_id}", headers=admin.headers)
            assert deleted.status_code == 204, deleted.text
        finally:
            for pid in running:
                os.kill(pid, signal.SIGCONT)
        await asyncio.wait_for(consuming, 120)  # uploads, finds the asset gone, cleans up
    finally:
        consuming.cancel()
    assert await _asset(superuser_conn, media_id) is None
    assert await _keys(s3, settings, admin.tenant_id, media_id) == set()
    assert await _used_bytes(superuser_conn, admin.tenant_id) == used_before_upload


def _worker_process(services, queue, tmp_path, *args, **env):
    return subprocess.Popen(
        [sys.executable, "-m", "courtside.cli", "worker", "media", *args],
        cwd=ROOT,
        env={
            **os.environ,
            **services.env,
            "SQS_MEDIA_QUEUE_URL": queue,
            "SQS_WAIT_SECONDS": "1",
            "METRICS_PORT": str(free_port()),
            "MEDIA_SCRATCH_DIR": str(tmp_path / "scratch"),
            **env,
        },
    )


async def test_sigterm_mid_transcode_kills_ffmpeg_records_nothing_and_returns_the_message(
    client, services, settings, db, superuser_conn, clients, queue, tmp_path
):
    s3, sqs = clients
    admin = await register_tenant(client)
    clip = make_clip(tmp_path / "match.mp4", 20, 320, 240)
    media_id = await _finalized_asset(s3, settings, superuser_conn, admin, clip, "video/mp4")
    used_before = await _used_bytes(superuser_conn, admin.tenant_id)
    job = await _send_job(db, sqs, queue, admin.tenant_id, media_id)
    # A slow preset on one thread: still transcoding well after SIGTERM and the grace.
    worker = _worker_process(
        services,
        queue,
        tmp_path,
        WORKER_SHUTDOWN_GRACE_SECONDS="0.5",
        MEDIA_VIDEO_PRESET="veryslow",
        MEDIA_FFMPEG_THREADS="1",
    )
    try:
        running = await wait_for_transcode(worker.pid, timeout=120)
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    assert ended(running)  # killed, not orphaned
    assert [args for args in ffmpeg_processes().values() if str(tmp_path) in " ".join(args)] == []
    assert list((tmp_path / "scratch").iterdir()) == []
    asset = await _asset(superuser_conn, media_id)
    assert (asset["status"], asset["renditions"], asset["thumbnail_key"]) == (
        "processing",
        [],
        None,
    )
    assert await _keys(s3, settings, admin.tenant_id, media_id) == {asset["s3_key"]}
    assert await _markers(superuser_conn, admin.tenant_id) == 0
    assert await _used_bytes(superuser_conn, admin.tenant_id) == used_before

    # Released at once (the visibility timeout is a minute): receivable right away.
    got = await sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2, VisibilityTimeout=0)
    assert [json.loads(m["Body"])["event_id"] for m in got.get("Messages", [])] == [str(job.id)]

    # A KEDA one-shot Job takes it from there, and exits once the queue is empty.
    once = _worker_process(services, queue, tmp_path, "--once", MEDIA_VIDEO_PRESET="ultrafast")
    try:
        assert await asyncio.to_thread(once.wait, 300) == 0
    finally:
        if once.poll() is None:
            once.kill()
    asset = await _asset(superuser_conn, media_id)
    assert asset["status"] == "ready"
    assert abs(asset["duration_ms"] - 20_000) <= 200
    assert await _used_bytes(superuser_conn, admin.tenant_id) - used_before == sum(
        r["size_bytes"] for r in asset["renditions"]
    )


async def test_forged_media_jobs_leave_another_tenants_asset_untouched(
    client, settings, db, superuser_conn, clients, queue, tmp_path
):
    s3, sqs = clients
    attacker, victim = await register_tenant(client), await register_tenant(client)
    garbage = make_garbage(tmp_path / "swing.mp4")
    # Processing either would change it: a corrupt file ends `failed`.
    victims_asset = await _finalized_asset(
        s3, settings, superuser_conn, victim, garbage, "video/mp4"
    )
    attackers_asset = await _finalized_asset(
        s3, settings, superuser_conn, attacker, garbage, "video/mp4"
    )
    real = await _media_job(db, attacker.tenant_id, attackers_asset)
    payload = {"media_id": str(victims_asset), "payload": {"media_id": str(victims_asset)}}

    def forged(event_id, tenant_id, event_type):
        envelope = json.loads(Envelope(event_id, tenant_id, event_type).to_body())
        return json.dumps({**payload, **envelope})

    rejected_before = _messages("rejected")
    # The attacker holds only sqs:SendMessage on the media queue.
    for body in (
        forged(uuid.uuid4(), victim.tenant_id, "media.process"),  # made-up event
        forged(real.id, victim.tenant_id, "media.process"),  # attacker's event, victim's tenant
        forged(real.id, attacker.tenant_id, "post.created"),  # a real event, another type
    ):
        await sqs.send_message(QueueUrl=queue, MessageBody=body)

    await run_media_worker_until_idle(
        media_worker_settings(settings, tmp_path), s3, queue
    )  # neither crashed
    assert _messages("rejected") - rejected_before == 3  # nor looping
    for media_id in (victims_asset, attackers_asset):
        asset = await _asset(superuser_conn, media_id)
        assert (asset["status"], asset["error_code"], asset["renditions"]) == (
            "processing",
            None,
            [],
        )
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM processed_events WHERE tenant_id = ANY($1::uuid[])",
            [victim.tenant_id, attacker.tenant_id],
        )
        == 0
    )
    assert await _queue_depth(sqs, queue) == 0
