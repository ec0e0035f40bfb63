"""Media API: uploads in presigned parts straight to S3 (moto over HTTP), finalize, quota,
visibility, deletion, comments at a moment of the video."""

import asyncio
import uuid

import httpx
import pytest

from app.infra import aws
from tests.factories import add_member, create_club, register_tenant
from tests.media_uploads import (
    MIB,
    finalize,
    put_parts,
    random_bytes,
    set_storage_limits,
    storage_of,
    upload,
    upload_intent,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def s3(settings):
    async with aws.client(settings, "s3") as client:
        yield client


@pytest.fixture
async def club(client):
    return await create_club(client)


async def _open_uploads(s3, settings, tenant_id) -> list[dict]:
    listed = await s3.list_multipart_uploads(
        Bucket=settings.s3_bucket, Prefix=f"tenants/{tenant_id}/"
    )
    return listed.get("Uploads", [])


async def _asset_row(conn, media_id):
    return await conn.fetchrow("SELECT * FROM media_assets WHERE id = $1", uuid.UUID(media_id))


async def test_multipart_upload_in_presigned_parts_then_finalize(
    client, club, s3, settings, superuser_conn
):
    athlete = club["athlete"]
    data = random_bytes(11 * MIB)
    response = await upload_intent(client, athlete, len(data))
    assert response.status_code == 201, response.text
    intent = response.json()
    assert intent["part_size"] == 5 * MIB
    assert [p["part_number"] for p in intent["parts"]] == [1, 2, 3]
    assert await storage_of(superuser_conn, athlete.tenant_id) == (0, len(data))

    parts = await put_parts(intent, data)
    first = await finalize(client, athlete, intent["media_id"], parts)
    assert first.status_code == 202, first.text
    asset = first.json()
    assert asset["status"] == "processing"
    assert asset["size_bytes"] == len(data)

    stored = await s3.get_object(
        Bucket=settings.s3_bucket,
        Key=(await _asset_row(superuser_conn, intent["media_id"]))["s3_key"],
    )
    assert await stored["Body"].read() == data
    assert await storage_of(superuser_conn, athlete.tenant_id) == (len(data), 0)
    events = await superuser_conn.fetch(
        "SELECT payload FROM outbox_events WHERE event_type = 'media.process' "
        "AND aggregate_id = $1",
        intent["media_id"],
    )
    assert len(events) == 1

    again = await finalize(client, athlete, intent["media_id"], parts)
    assert again.status_code == 202
    assert again.json() == first.json()
    assert await storage_of(superuser_conn, athlete.tenant_id) == (len(data), 0)
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM outbox_events WHERE aggregate_id = $1", intent["media_id"]
        )
        == 1
    )
    got = await client.get(f"/media/{intent['media_id']}", headers=athlete.headers)
    assert got.status_code == 200
    assert got.json()["status"] == "processing"


async def test_types_not_allowed_are_refused_with_415(client, club):
    response = await upload_intent(
        client, club["athlete"], 1000, content_type="application/x-msdownload", filename="a.exe"
    )
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"
    assert "video/mp4" in response.json()["allowed_types"]


@pytest.mark.parametrize(
    "filename",
    ["../../etc/passwd", "a/b.mp4", "nul\x00.mp4", ""],
    ids=["dots", "slash", "nul", "empty"],
)
async def test_file_names_with_paths_or_control_characters_are_refused(client, club, filename):
    response = await upload_intent(client, club["athlete"], 1000, filename=filename)
    assert response.status_code == 422


async def test_file_over_the_tenants_max_upload_size_gets_413_and_reserves_nothing(
    client, s3, settings, superuser_conn
):
    admin = await register_tenant(client)
    await set_storage_limits(
        superuser_conn, admin.tenant_id, max_upload_bytes=10_000, quota_bytes=1_000_000
    )
    response = await upload_intent(client, admin, 10_001)
    assert response.status_code == 413
    problem = response.json()
    assert problem["max_upload_bytes"] == 10_000
    assert problem["remaining_bytes"] == 1_000_000
    assert await storage_of(superuser_conn, admin.tenant_id) == (0, 0)
    assert await _open_uploads(s3, settings, admin.tenant_id) == []
    assert (await upload_intent(client, admin, 10_000)).status_code == 201


async def test_reservations_count_against_the_quota_until_finalize(
    client, s3, settings, superuser_conn
):
    admin = await register_tenant(client)
    await set_storage_limits(superuser_conn, admin.tenant_id, quota_bytes=100_000)
    first = (await upload_intent(client, admin, 60_000)).json()
    refused = await upload_intent(client, admin, 50_000)
    assert refused.status_code == 413
    assert refused.json()["remaining_bytes"] == 40_000
    assert (await upload_intent(client, admin, 40_000)).status_code == 201
    assert await storage_of(superuser_conn, admin.tenant_id) == (0, 100_000)
    assert len(await _open_uploads(s3, settings, admin.tenant_id)) == 2

    parts = await put_parts(first, random_bytes(60_000))
    assert (await finalize(client, admin, first["media_id"], parts)).status_code == 202
    assert await storage_of(superuser_conn, admin.tenant_id) == (60_000, 40_000)


async def test_concurrent_intents_never_reserve_past_the_quota(
    client, s3, settings, superuser_conn
):
    admin = await register_tenant(client)
    await set_storage_limits(superuser_conn, admin.tenant_id, quota_bytes=35_000)
    answers = await asyncio.gather(*(upload_intent(client, admin, 10_000) for _ in range(10)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] * 3 + [413] * 7
    assert await storage_of(superuser_conn, admin.tenant_id) == (0, 30_000)
    # A refused intent leaves no upload behind in S3.
    assert len(await _open_uploads(s3, settings, admin.tenant_id)) == 3


async def test_ten_concurrent_finalizes_never_store_past_a_lowered_quota(client, superuser_conn):
    admin = await register_tenant(client)
    await set_storage_limits(superuser_conn, admin.tenant_id, quota_bytes=100_000)
    intents = [(await upload_intent(client, admin, 10_000)).json() for _ in range(10)]
    uploaded = [await put_parts(i, random_bytes(10_000)) for i in intents]
    # The operator lowers the quota while the uploads are under way.
    await set_storage_limits(superuser_conn, admin.tenant_id, quota_bytes=45_000)

    answers = await asyncio.gather(
        *(finalize(client, admin, i["media_id"], p) for i, p in zip(intents, uploaded, strict=True))
    )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [202] * 4 + [413] * 6
    used, reserved = await storage_of(superuser_conn, admin.tenant_id)
    assert used == 40_000 <= 45_000
    assert reserved == 60_000
    # Refused ones are still pending: deleting them gives their reservation back.
    for intent, answer in zip(intents, answers, strict=True):
        if answer.status_code == 413:
            gone = await client.delete(f"/media/{intent['media_id']}", headers=admin.headers)
            assert gone.status_code == 204
    assert await storage_of(superuser_conn, admin.tenant_id) == (40_000, 0)


async def test_wrong_etags_give_409_and_the_upload_stays_resumable(client, club, superuser_conn):
    athlete = club["athlete"]
    data = random_bytes(6 * MIB)
    intent = (await upload_intent(client, athlete, len(data))).json()
    parts = await put_parts(intent, data)
    forged = [parts[0], {"part_number": 2, "etag": '"0123456789abcdef0123456789abcdef"'}]
    response = await finalize(client, athlete, intent["media_id"], forged)
    assert response.status_code == 409
    assert response.json()["mismatched_parts"] == [2]
    row = await _asset_row(superuser_conn, intent["media_id"])
    assert row["status"] == "pending_upload"

    # Resume: the API lists what S3 holds and signs fresh URLs.
    state = await client.get(f"/media/{intent['media_id']}/upload", headers=athlete.headers)
    assert state.status_code == 200
    held = {p["part_number"]: p["etag"] for p in state.json()["uploaded_parts"]}
    assert held == {p["part_number"]: p["etag"].strip('"') for p in parts}
    assert len(state.json()["parts"]) == 2

    assert (await finalize(client, athlete, intent["media_id"], parts)).status_code == 202


async def test_missing_unuploaded_or_short_parts_give_422_and_stay_resumable(client, club):
    athlete = club["athlete"]
    data = random_bytes(6 * MIB)
    intent = (await upload_intent(client, athlete, len(data))).json()
    media_id = intent["media_id"]
    first = (await put_parts({**intent, "parts": intent["parts"][:1]}, data))[0]

    listed_one = await finalize(client, athlete, media_id, [first])
    assert listed_one.status_code == 422
    assert listed_one.json()["missing_parts"] == [2]

    guessed = [first, {"part_number": 2, "etag": first["etag"]}]
    not_uploaded = await finalize(client, athlete, media_id, guessed)
    assert not_uploaded.status_code == 422
    assert not_uploaded.json()["missing_parts"] == [2]

    # Part 2 uploaded one byte short: the object would not be the file declared.
    async with httpx.AsyncClient() as plain:
        short = await plain.put(intent["parts"][1]["url"], content=data[5 * MIB : -1])
    short_parts = [first, {"part_number": 2, "etag": short.headers["etag"]}]
    wrong_size = await finalize(client, athlete, media_id, short_parts)
    assert wrong_size.status_code == 422
    assert wrong_size.json()["wrong_size_parts"] == [2]

    # Uploading part 2 again fixes it.
    parts = await put_parts(intent, data)
    assert (await finalize(client, athlete, media_id, parts)).status_code == 202


async def test_only_the_uploader_finalizes_or_resumes(client, club):
    intent = (await upload_intent(client, club["athlete"], 1000)).json()
    parts = await put_parts(intent, random_bytes(1000))
    for other in (club["coach"], club["admin"]):
        assert (await finalize(client, other, intent["media_id"], parts)).status_code == 404
        resumed = await client.get(f"/media/{intent['media_id']}/upload", headers=other.headers)
        assert resumed.status_code == 404


async def _ready(superuser_conn, media_id: str) -> None:
    """What the media worker records (its own tests run the real thing)."""
    await superuser_conn.execute(
        "UPDATE media_assets SET status = 'ready', duration_ms = 4000 WHERE id = $1",
        uuid.UUID(media_id),
    )


async def test_visibility_owner_admin_and_members_of_spaces_where_a_post_carries_it(
    client, club, superuser_conn
):
    athlete, coach, outsider = club["athlete"], club["coach"], club["outsider"]
    stranger = await register_tenant(client)
    asset = await upload(client, athlete, random_bytes(2000))
    media_id = asset["id"]
    await _ready(superuser_conn, media_id)

    def paths() -> list[str]:
        return [
            f"/media/{media_id}",
            f"/media/{media_id}/playback-url",
            f"/media/{media_id}/comments",
        ]

    for path in paths():
        assert (await client.get(path, headers=athlete.headers)).status_code == 200, path
        assert (await client.get(path, headers=club["admin"].headers)).status_code == 200, path
        # Not shared yet: the coach of the athlete's space does not see it.
        for attacker in (coach, outsider, stranger):
            answer = await client.get(path, headers=attacker.headers)
            assert answer.status_code == 404, (path, answer.text)
            assert answer.json()["detail"] == "Media not found."
    comment = {"at_ms": 100, "body": "hi"}
    for attacker in (coach, outsider, stranger):
        posted = await client.post(
            f"/media/{media_id}/comments", headers=attacker.headers, json=comment
        )
        assert posted.status_code == 404

    # Posting it in the space shares it with the space's members, and no one else.
    post = await client.post(
        "/posts",
        headers=athlete.headers,
        json={"space_id": club["space"], "body": "my swing", "media_ids": [media_id]},
    )
    assert post.status_code == 201
    for path in paths():
        assert (await client.get(path, headers=coach.headers)).status_code == 200, path
        for attacker in (outsider, stranger):
            assert (await client.get(path, headers=attacker.headers)).status_code == 404
    # Deleting the post unshares it.
    deleted = await client.delete(f"/posts/{post.json()['id']}", headers=athlete.headers)
    assert deleted.status_code == 204
    assert (await client.get(f"/media/{media_id}", headers=coach.headers)).status_code == 404


async def test_playback_url_is_409_until_ready_then_downloads(client, club, superuser_conn):
    athlete = club["athlete"]
    data = random_bytes(3000)
    asset = await upload(client, athlete, data, content_type="image/png", filename="grip.png")
    early = await client.get(f"/media/{asset['id']}/playback-url", headers=athlete.headers)
    assert early.status_code == 409
    await _ready(superuser_conn, asset["id"])
    answer = await client.get(f"/media/{asset['id']}/playback-url", headers=athlete.headers)
    assert answer.status_code == 200
    body = answer.json()
    assert body["content_type"] == "image/png"
    async with httpx.AsyncClient() as plain:
        download = await plain.get(body["url"])
    assert download.status_code == 200
    assert download.content == data
    assert download.headers["content-type"] == "image/png"


async def test_delete_removes_objects_and_frees_the_quota(
    client, club, s3, settings, superuser_conn
):
    athlete, admin = club["athlete"], club["admin"]
    data = random_bytes(4000)
    mine = await upload(client, athlete, data)
    second = await upload(client, athlete, data)
    row = await _asset_row(superuser_conn, mine["id"])
    # A rendition the worker wrote, counted as the worker counts it.
    prefix = row["s3_key"].rsplit("/", 1)[0]
    await s3.put_object(Bucket=settings.s3_bucket, Key=f"{prefix}/720p.mp4", Body=b"x" * 500)
    await superuser_conn.execute(
        "UPDATE media_assets SET stored_bytes = stored_bytes + 500 WHERE id = $1", row["id"]
    )
    await superuser_conn.execute(
        "UPDATE tenant_storage SET used_bytes = used_bytes + 500 WHERE tenant_id = $1",
        athlete.tenant_id,
    )
    await client.post(
        "/posts",
        headers=athlete.headers,
        json={"space_id": club["space"], "body": "look", "media_ids": [mine["id"]]},
    )
    # A member who can see it may not delete it.
    refused = await client.delete(f"/media/{mine['id']}", headers=club["coach"].headers)
    assert refused.status_code == 403
    assert await storage_of(superuser_conn, athlete.tenant_id) == (2 * 4000 + 500, 0)

    assert (await client.delete(f"/media/{mine['id']}", headers=athlete.headers)).status_code == 204
    listed = await s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix=prefix)
    assert listed.get("KeyCount", 0) == 0
    assert await storage_of(superuser_conn, athlete.tenant_id) == (4000, 0)
    assert (await client.get(f"/media/{mine['id']}", headers=athlete.headers)).status_code == 404

    # An ADMIN may delete anyone's.
    assert (await client.delete(f"/media/{second['id']}", headers=admin.headers)).status_code == 204
    assert await storage_of(superuser_conn, athlete.tenant_id) == (0, 0)


async def test_delete_of_a_pending_upload_aborts_it(client, club, s3, settings, superuser_conn):
    athlete = club["athlete"]
    intent = (await upload_intent(client, athlete, 7 * MIB)).json()
    await put_parts({**intent, "parts": intent["parts"][:1]}, random_bytes(7 * MIB))
    assert len(await _open_uploads(s3, settings, athlete.tenant_id)) == 1
    assert (
        await client.delete(f"/media/{intent['media_id']}", headers=athlete.headers)
    ).status_code == 204
    assert await _open_uploads(s3, settings, athlete.tenant_id) == []
    assert await storage_of(superuser_conn, athlete.tenant_id) == (0, 0)


async def test_comments_at_moments_ordered_by_time_with_drawings(client, club, superuser_conn):
    athlete, coach = club["athlete"], club["coach"]
    asset = await upload(client, athlete, random_bytes(1000))
    await _ready(superuser_conn, asset["id"])
    await client.post(
        "/posts",
        headers=athlete.headers,
        json={"space_id": club["space"], "body": "my swing", "media_ids": [asset["id"]]},
    )
    url = f"/media/{asset['id']}/comments"
    drawing = [
        {"type": "arrow", "start": {"x": 0.1, "y": 0.2}, "end": {"x": 0.5, "y": 0.5}},
        {"type": "circle", "center": {"x": 0.5, "y": 0.5}, "radius": 0.1, "color": "#00ff00"},
    ]
    for at_ms, body in ((3000, "follow through"), (500, "grip"), (1500, "hips")):
        posted = await client.post(
            url,
            headers=coach.headers,
            json={"at_ms": at_ms, "body": body, **({"drawing": drawing} if at_ms == 1500 else {})},
        )
        assert posted.status_code == 201, posted.text
    first = (await client.get(url, headers=athlete.headers, params={"limit": 2})).json()
    assert [c["body"] for c in first["items"]] == ["grip", "hips"]
    assert first["items"][1]["drawing"][0]["type"] == "arrow"
    rest = (
        await client.get(url, headers=athlete.headers, params={"cursor": first["next_cursor"]})
    ).json()
    assert [c["at_ms"] for c in rest["items"]] == [3000]
    assert rest["next_cursor"] is None


@pytest.mark.parametrize(
    "comment",
    [
        {"at_ms": 4001, "body": "past the end"},
        {"at_ms": -1, "body": "before the start"},
        {"at_ms": 10, "body": "nul \x00 byte"},
        {"at_ms": 10, "body": "x", "drawing": [{"type": "star", "center": {"x": 0, "y": 0}}]},
        {
            "at_ms": 10,
            "body": "x",
            "drawing": [{"type": "circle", "center": {"x": 2, "y": 0}, "radius": 0.1}],
        },
        {
            "at_ms": 10,
            "body": "x",
            "drawing": [{"type": "line", "start": {"x": 0, "y": 0}, "end": {"x": 1, "y": 1}}] * 51,
        },
        {
            "at_ms": 10,
            "body": "x",
            "drawing": [{"type": "freehand", "points": [{"x": 0.5, "y": 0.5}] * 501}],
        },
    ],
    ids=[
        "past-end",
        "negative",
        "nul",
        "unknown-shape",
        "off-frame",
        "too-many-shapes",
        "too-many-points",
    ],
)
async def test_bad_comments_get_422_and_are_not_stored(client, club, superuser_conn, comment):
    athlete = club["athlete"]
    asset = await upload(client, athlete, random_bytes(1000))
    await _ready(superuser_conn, asset["id"])
    answer = await client.post(
        f"/media/{asset['id']}/comments", headers=athlete.headers, json=comment
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM media_comments WHERE media_id = $1", uuid.UUID(asset["id"])
        )
        == 0
    )


async def test_expired_upload_cannot_be_finalized(client, club, superuser_conn):
    athlete = club["athlete"]
    intent = (await upload_intent(client, athlete, 1000)).json()
    parts = await put_parts(intent, random_bytes(1000))
    await superuser_conn.execute(
        "UPDATE media_assets SET status = 'expired' WHERE id = $1", uuid.UUID(intent["media_id"])
    )
    assert (await finalize(client, athlete, intent["media_id"], parts)).status_code == 410


async def test_a_scheduler_can_upload_too_but_not_see_others_media(client, club):
    scheduler = await add_member(client, club["admin"], "SCHEDULER")
    asset = await upload(client, club["athlete"], random_bytes(1000))
    assert (await client.get(f"/media/{asset['id']}", headers=scheduler.headers)).status_code == 404
    assert (await upload_intent(client, scheduler, 1000)).status_code == 201
