import json
import uuid

import pytest

from app.infra.db import TENANT_CONTEXT_SQL
from tests.factories import create_club, create_post, create_space, register_tenant

PROBLEM = "application/problem+json"


@pytest.fixture
async def club(client):
    return await create_club(client, athletes=("athlete", "teammate"), others=("outsider",))


async def _feed(client, account, **params):
    response = await client.get("/posts", headers=account.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_member_posts_and_the_space_feed_shows_it_newest_first(client, club):
    first = await create_post(client, club["athlete"], club["space"], "first")
    second = await create_post(client, club["coach"], club["space"], "second")
    feed = await _feed(client, club["teammate"], space_id=club["space"])
    assert [p["id"] for p in feed["items"]] == [second["id"], first["id"]]
    assert feed["items"][0]["author_id"] == str(club["coach"].user_id)


async def test_feed_without_space_spans_the_callers_spaces_only(client, club):
    mine = await create_post(client, club["athlete"], club["space"])
    other_space = await create_space(client, club["coach"], club["outsider"], name="Other")
    theirs = await create_post(client, club["outsider"], other_space)
    ids = [p["id"] for p in (await _feed(client, club["athlete"]))["items"]]
    assert mine["id"] in ids and theirs["id"] not in ids


async def test_non_member_cannot_read_or_post_in_a_space(client, club):
    feed = await client.get(
        "/posts", headers=club["outsider"].headers, params={"space_id": club["space"]}
    )
    assert feed.status_code == 404
    post = await client.post(
        "/posts", headers=club["outsider"].headers, json={"space_id": club["space"], "body": "hi"}
    )
    assert post.status_code == 404


async def test_empty_space_feed_is_empty_not_404(client, club):
    feed = await _feed(client, club["athlete"], space_id=club["space"])
    assert feed == {"items": [], "next_cursor": None}


async def test_admin_reads_any_space_feed(client, club):
    post = await create_post(client, club["athlete"], club["space"])
    feed = await _feed(client, club["admin"], space_id=club["space"])
    assert [p["id"] for p in feed["items"]] == [post["id"]]


async def test_limit_is_capped_at_100(client, club):
    response = await client.get("/posts", headers=club["athlete"].headers, params={"limit": 101})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert [e["loc"] for e in response.json()["errors"]] == [["query", "limit"]]


async def test_bad_feed_query_is_a_422_naming_each_field(client, club):
    response = await client.get(
        "/posts",
        headers=club["athlete"].headers,
        params={"space_id": "not-a-uuid", "limit": "ten", "cursor": "c" * 201},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert sorted(tuple(e["loc"]) for e in response.json()["errors"]) == [
        ("query", "cursor"),
        ("query", "limit"),
        ("query", "space_id"),
    ]


async def test_feed_query_parameters_are_documented(client):
    spec = (await client.get("/openapi.json")).json()
    feed = spec["paths"]["/posts"]["get"]
    documented = {p["name"]: p for p in feed["parameters"]}
    assert set(documented) == {"space_id", "limit", "cursor"}
    assert all(p["in"] == "query" and not p["required"] for p in documented.values())
    assert documented["limit"]["schema"]["maximum"] == 100
    assert feed["security"] == [{"HTTPBearer": []}]


async def test_pagination_neither_skips_nor_repeats_while_posts_arrive(client, club):
    original = [
        (await create_post(client, club["athlete"], club["space"], f"p{i}"))["id"]
        for i in range(25)
    ]
    seen, cursor, page_number = [], None, 0
    while True:
        params = {"space_id": club["space"], "limit": 10} | ({"cursor": cursor} if cursor else {})
        page = await _feed(client, club["teammate"], **params)
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        # New posts land at the top while the client pages down.
        await create_post(client, club["coach"], club["space"], f"new {page_number}")
        page_number += 1
        if cursor is None:
            break
    assert seen == list(reversed(original))


async def test_comments_are_paginated_oldest_first(client, club):
    post = await create_post(client, club["athlete"], club["space"])
    for i in range(5):
        r = await client.post(
            f"/posts/{post['id']}/comments", headers=club["coach"].headers, json={"body": f"c{i}"}
        )
        assert r.status_code == 201
    first = (
        await client.get(
            f"/posts/{post['id']}", headers=club["athlete"].headers, params={"comments_limit": 3}
        )
    ).json()
    assert [c["body"] for c in first["comments"]["items"]] == ["c0", "c1", "c2"]
    rest = (
        await client.get(
            f"/posts/{post['id']}",
            headers=club["athlete"].headers,
            params={"comments_limit": 3, "comments_cursor": first["comments"]["next_cursor"]},
        )
    ).json()
    assert [c["body"] for c in rest["comments"]["items"]] == ["c3", "c4"]
    assert rest["comments"]["next_cursor"] is None


@pytest.mark.parametrize("deleter", ["athlete", "coach", "admin"])
async def test_author_space_coach_or_admin_may_delete(client, club, deleter):
    post = await create_post(client, club["athlete"], club["space"])
    response = await client.delete(f"/posts/{post['id']}", headers=club[deleter].headers)
    assert response.status_code == 204
    gone = await client.get(f"/posts/{post['id']}", headers=club["athlete"].headers)
    assert gone.status_code == 404
    assert post["id"] not in [p["id"] for p in (await _feed(client, club["teammate"]))["items"]]


async def test_another_member_may_not_delete(client, club):
    post = await create_post(client, club["athlete"], club["space"])
    response = await client.delete(f"/posts/{post['id']}", headers=club["teammate"].headers)
    assert response.status_code == 403


async def test_delete_is_soft_and_audited(client, club, superuser_conn):
    post = await create_post(client, club["athlete"], club["space"])
    await client.delete(f"/posts/{post['id']}", headers=club["coach"].headers)
    row = await superuser_conn.fetchrow(
        "SELECT deleted_at, deleted_by FROM posts WHERE id = $1", uuid.UUID(post["id"])
    )
    assert row["deleted_at"] is not None and row["deleted_by"] == club["coach"].user_id
    audit = (
        await client.get(
            "/admin/audit", headers=club["admin"].headers, params={"action": "post.deleted"}
        )
    ).json()["items"]
    assert [a["target_id"] for a in audit] == [post["id"]]


async def test_clients_cannot_set_author_or_tenant(client, club):
    response = await client.post(
        "/posts",
        headers=club["athlete"].headers,
        json={
            "space_id": club["space"],
            "body": "x",
            "author_id": str(club["coach"].user_id),
            "tenant_id": str(uuid.uuid4()),
        },
    )
    assert response.status_code == 422
    assert {tuple(e["loc"]) for e in response.json()["errors"]} == {
        ("body", "author_id"),
        ("body", "tenant_id"),
    }


async def _media(superuser_conn, tenant_id, owner_id):
    media_id = uuid.uuid4()
    await superuser_conn.execute(
        "INSERT INTO media_assets (id, tenant_id, owner_id, content_type, s3_key) "
        "VALUES ($1, $2, $3, 'video/mp4', $4)",
        media_id,
        tenant_id,
        owner_id,
        f"tenants/{tenant_id}/{media_id}",
    )
    return media_id


async def test_post_may_carry_media_of_its_own_tenant_only(client, club, superuser_conn):
    athlete = club["athlete"]
    own = await _media(superuser_conn, athlete.tenant_id, athlete.user_id)
    stranger = await register_tenant(client)
    foreign = await _media(superuser_conn, stranger.tenant_id, stranger.user_id)
    ok = await client.post(
        "/posts",
        headers=athlete.headers,
        json={"space_id": club["space"], "body": "serve", "media_ids": [str(own)]},
    )
    assert ok.status_code == 201 and ok.json()["media_ids"] == [str(own)]
    refused = await client.post(
        "/posts",
        headers=athlete.headers,
        json={"space_id": club["space"], "body": "serve", "media_ids": [str(own), str(foreign)]},
    )
    assert refused.status_code == 422
    assert refused.json()["missing_media_ids"] == [str(foreign)]


async def test_member_cannot_post_media_another_member_uploaded(client, club, runtime_conn):
    owner, thief = club["athlete"], club["outsider"]
    thiefs_space = await create_space(client, club["coach"], thief, name="Elsewhere")
    # The owner's upload, written as the runtime role in their tenant (no upload API yet).
    async with runtime_conn.transaction():
        await runtime_conn.execute(TENANT_CONTEXT_SQL, str(owner.tenant_id), str(owner.user_id))
        video = await runtime_conn.fetchval(
            "INSERT INTO media_assets (tenant_id, owner_id, content_type, s3_key) "
            "VALUES ($1, $2, 'video/mp4', $3) RETURNING id",
            owner.tenant_id,
            owner.user_id,
            f"tenants/{owner.tenant_id}/{uuid.uuid4()}",
        )
    response = await client.post(
        "/posts",
        headers=thief.headers,
        json={"space_id": thiefs_space, "body": "look", "media_ids": [str(video)]},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["missing_media_ids"] == [str(video)]  # as if it did not exist
    async with runtime_conn.transaction():
        await runtime_conn.execute(TENANT_CONTEXT_SQL, str(owner.tenant_id), "")
        assert await runtime_conn.fetchval("SELECT count(*) FROM posts") == 0
        assert await runtime_conn.fetchval("SELECT count(*) FROM outbox_events") == 0


async def test_post_and_comment_write_outbox_events(client, club, superuser_conn):
    post = await create_post(client, club["athlete"], club["space"])
    comment = (
        await client.post(
            f"/posts/{post['id']}/comments", headers=club["coach"].headers, json={"body": "nice"}
        )
    ).json()
    rows = await superuser_conn.fetch(
        "SELECT event_type, aggregate_type, aggregate_id, tenant_id, payload FROM outbox_events "
        "WHERE aggregate_id = $1 ORDER BY created_at",
        post["id"],
    )
    assert [r["event_type"] for r in rows] == ["post.created", "comment.created"]
    assert all(r["tenant_id"] == club["athlete"].tenant_id for r in rows)
    created, commented = (json.loads(r["payload"]) for r in rows)
    assert created["space_id"] == club["space"]
    # The envelope lives in the row's columns only; the payload never repeats it.
    assert not {"event_id", "tenant_id", "type"} & (created.keys() | commented.keys())
    assert commented["comment_id"] == comment["id"]
    assert commented["post_author_id"] == str(club["athlete"].user_id)


async def test_an_error_after_the_insert_leaves_neither_post_nor_event(
    client, club, db, superuser_conn, monkeypatch
):
    from sqlalchemy import event

    from app.auth.caller import Caller
    from app.events.models import OutboxEvent
    from app.posts import service
    from app.posts.models import Post
    from app.tenants.models import Role

    athlete = club["athlete"]
    caller = Caller(athlete.user_id, athlete.tenant_id, Role.ATHLETE)
    flushed: list[type] = []

    def crash_once_both_rows_are_in_the_database(session, _context):
        # after_flush: the INSERTs have run inside the transaction; now the request fails.
        written = {type(o) for o in session.new} | set(flushed)
        flushed.extend(written)
        if {Post, OutboxEvent} <= written:
            raise RuntimeError("crash after the post and its event were inserted")

    open_session = db.session

    def session_that_crashes(*args, **kwargs):
        session = open_session(*args, **kwargs)
        event.listen(session.sync_session, "after_flush", crash_once_both_rows_are_in_the_database)
        return session

    monkeypatch.setattr(db, "session", session_that_crashes)
    with pytest.raises(RuntimeError, match="crash after"):
        await service.create_post(
            db, caller, space_id=uuid.UUID(club["space"]), body="never saved", media_ids=[]
        )
    assert {Post, OutboxEvent} <= set(flushed)
    assert (
        await superuser_conn.fetchval("SELECT count(*) FROM posts WHERE body = 'never saved'") == 0
    )
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM outbox_events WHERE tenant_id = $1 "
            "AND event_type = 'post.created'",
            athlete.tenant_id,
        )
        == 0
    )


async def test_a_failed_comment_request_leaves_no_event(client, club, superuser_conn):
    """A comment on a post that is gone fails as a whole: 404 and no comment.created."""
    post = await create_post(client, club["athlete"], club["space"])
    await client.delete(f"/posts/{post['id']}", headers=club["athlete"].headers)
    response = await client.post(
        f"/posts/{post['id']}/comments", headers=club["coach"].headers, json={"body": "late"}
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert (
        await superuser_conn.fetchval(
            "SELECT count(*) FROM outbox_events WHERE aggregate_id = $1 "
            "AND event_type = 'comment.created'",
            post["id"],
        )
        == 0
    )


async def test_feed_query_uses_the_index_not_a_seq_scan(client, club, superuser_conn, runtime_conn):
    from app.posts.service import _MEMBER_FEED, _SPACE_FEED

    athlete = club["athlete"]
    # A realistic shape: many tenants' posts in the table, a few thousand in this space.
    await superuser_conn.execute(
        "INSERT INTO posts (tenant_id, space_id, author_id, body, created_at) "
        "SELECT $1, $2, $3, 'bulk ' || g, now() - g * interval '1 minute' "
        "FROM generate_series(1, 3000) g",
        athlete.tenant_id,
        uuid.UUID(club["space"]),
        athlete.user_id,
    )
    other = await register_tenant(client)
    other_space = await create_space(client, other)
    await superuser_conn.execute(
        "INSERT INTO posts (tenant_id, space_id, author_id, body) "
        "SELECT $1, $2, $3, 'other ' || g FROM generate_series(1, 20000) g",
        other.tenant_id,
        uuid.UUID(other_space),
        other.user_id,
    )
    await superuser_conn.execute("ANALYZE posts; ANALYZE space_members")
    async with runtime_conn.transaction():
        await runtime_conn.execute(TENANT_CONTEXT_SQL, str(athlete.tenant_id), str(athlete.user_id))
        plan = "\n".join(
            r[0]
            for r in await runtime_conn.fetch(
                "EXPLAIN " + _SPACE_FEED,
                uuid.UUID(club["space"]),
                False,
                athlete.user_id,
                21,
                None,
                None,
            )
        )
        member_plan = "\n".join(
            r[0]
            for r in await runtime_conn.fetch(
                "EXPLAIN " + _MEMBER_FEED, athlete.user_id, 21, None, None
            )
        )
    assert "Seq Scan on posts" not in plan, plan
    assert "ix_posts_tenant_id_space_id_created_at" in plan, plan
    assert "Seq Scan on posts" not in member_plan, member_plan
    assert "ix_posts_tenant_id_space_id_created_at" in member_plan, member_plan


async def test_feed_without_a_token_is_401_and_its_schema_stays_documented(client, app):
    response = await client.get("/posts")
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    operation = app.openapi()["paths"]["/posts"]["get"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert "HTTPBearer" in app.openapi()["components"]["securitySchemes"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("PageOut_PostOut_")
    assert {p["name"] for p in operation["parameters"]} == {"space_id", "limit", "cursor"}
