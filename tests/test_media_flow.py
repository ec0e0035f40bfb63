"""The whole video-review flow, every hop real: a clip made by ffmpeg, the upload intent,
its parts PUT over plain HTTP to moto's presigned URLs, finalize, the outbox relay to SQS,
the media worker transcoding with ffmpeg, and the playback URL downloading a playable MP4."""

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from app.infra import aws
from app.infra.db import asyncpg_dsn
from tests.factories import create_club
from tests.media_clips import make_clip, probe, top_level_boxes
from tests.media_uploads import (
    finalize,
    media_worker_settings,
    put_parts,
    run_media_worker_until_idle,
    storage_of,
    upload_intent,
)
from workers.outbox_relay import OutboxRelay, Publisher

pytestmark = pytest.mark.timeout(300)


async def test_a_clip_goes_from_the_phone_to_playback(client, settings, superuser_conn, tmp_path):
    club = await create_club(client)
    athlete, coach = club["athlete"], club["coach"]
    clip = await asyncio.to_thread(make_clip, tmp_path / "swing.mp4", 4, 1280, 960)
    data = clip.read_bytes()

    intent = await upload_intent(client, athlete, len(data), filename="swing.mp4")
    assert intent.status_code == 201, intent.text
    parts = await put_parts(intent.json(), data)
    # Only this test's event goes through the relay.
    await superuser_conn.execute(
        "UPDATE outbox_events SET status = 'sent', sent_at = now() WHERE status = 'pending'"
    )
    media_id = intent.json()["media_id"]
    finalized = await finalize(client, athlete, media_id, parts)
    assert finalized.status_code == 202, finalized.text

    worker_settings = media_worker_settings(settings, tmp_path)
    async with aws.client(settings, "sqs") as sqs, aws.client(settings, "s3") as s3:
        queue = (await sqs.create_queue(QueueName=f"flow-{uuid.uuid4().hex[:10]}"))["QueueUrl"]
        pool = await asyncpg.create_pool(
            asyncpg_dsn(settings.relay_database_url), min_size=1, max_size=2
        )
        try:
            relay = OutboxRelay(worker_settings, Publisher(sqs, {"media": queue}), pool)
            assert await relay.drain() == 1
        finally:
            await pool.close()
        await run_media_worker_until_idle(worker_settings, s3, queue)

    asset = (await client.get(f"/media/{media_id}", headers=athlete.headers)).json()
    assert asset["status"] == "ready", asset
    assert asset["size_bytes"] == len(data)
    assert abs(asset["duration_ms"] - 4000) <= 200
    assert (asset["width"], asset["height"]) == (1280, 960)
    assert asset["video_codec"] == "h264" and asset["audio_codec"] == "aac"
    assert asset["has_thumbnail"] is True
    # Storage counts the original and every rendition, and nothing is reserved any more.
    used, reserved = await storage_of(superuser_conn, athlete.tenant_id)
    assert (used, reserved) == (len(data) + sum(r["size_bytes"] for r in asset["renditions"]), 0)
    assert {r["content_type"] for r in asset["renditions"]} == {"video/mp4", "image/jpeg"}

    # Shared in the space, the coach plays it.
    posted = await client.post(
        "/posts",
        headers=athlete.headers,
        json={"space_id": club["space"], "body": "my swing", "media_ids": [media_id]},
    )
    assert posted.status_code == 201
    playback = await client.get(f"/media/{media_id}/playback-url", headers=coach.headers)
    assert playback.status_code == 200, playback.text
    body = playback.json()
    assert body["content_type"] == "video/mp4"
    async with httpx.AsyncClient(timeout=60) as plain:
        video = await plain.get(body["url"])
        poster = await plain.get(body["thumbnail_url"])
    assert video.status_code == 200 and poster.status_code == 200
    assert poster.content[:3] == b"\xff\xd8\xff"  # a JPEG
    played = tmp_path / "played.mp4"
    await asyncio.to_thread(played.write_bytes, video.content)
    found = await asyncio.to_thread(probe, played)
    streams = {s["codec_type"]: s for s in found["streams"]}
    assert streams["video"]["codec_name"] == "h264"
    assert streams["audio"]["codec_name"] == "aac"
    assert max(streams["video"]["width"], streams["video"]["height"]) <= 1280
    assert min(streams["video"]["width"], streams["video"]["height"]) <= 720
    assert abs(float(found["format"]["duration"]) - 4.0) <= 0.2
    boxes = top_level_boxes(played)
    assert boxes.index("moov") < boxes.index("mdat")  # +faststart: plays while downloading

    # The coach comments at the second the elbow drops; ordered by the moment.
    for at_ms, text in ((2500, "follow through"), (1000, "elbow")):
        answer = await client.post(
            f"/media/{media_id}/comments",
            headers=coach.headers,
            json={"at_ms": at_ms, "body": text},
        )
        assert answer.status_code == 201
    listed = await client.get(f"/media/{media_id}/comments", headers=athlete.headers)
    assert [c["body"] for c in listed.json()["items"]] == ["elbow", "follow through"]
    late = await client.post(
        f"/media/{media_id}/comments", headers=coach.headers, json={"at_ms": 4500, "body": "x"}
    )
    assert late.status_code == 422
