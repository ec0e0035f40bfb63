import uuid

from app.notifications import service
from tests.factories import add_member, create_space, register_tenant


async def _notify_space(db, admin, space_id, author):
    async with db.transaction(admin.tenant_id) as session:
        await service.notify(session, tenant_id=admin.tenant_id, event_id=uuid.uuid4(),
                             event_type="post.created",
                             payload={"space_id": space_id, "author_id": str(author.user_id),
                                      "post_id": str(uuid.uuid4())})


async def test_unread_filter_and_mark_read(client, db):
    admin = await register_tenant(client)
    coach = await add_member(client, admin, "COACH")
    athlete = await add_member(client, admin, "ATHLETE")
    space = await create_space(client, coach, athlete)
    await _notify_space(db, admin, space, coach)
    await _notify_space(db, admin, space, coach)
    items = (await client.get("/notifications", headers=athlete.headers)).json()["items"]
    assert len(items) == 2
    read = await client.post(f"/notifications/{items[0]['id']}/read", headers=athlete.headers)
    assert read.status_code == 200 and read.json()["read_at"] is not None
    unread = (await client.get("/notifications", headers=athlete.headers,
                               params={"unread": "true"})).json()["items"]
    assert [n["id"] for n in unread] == [items[1]["id"]]


async def test_someone_elses_notification_is_404(client, db):
    admin = await register_tenant(client)
    coach = await add_member(client, admin, "COACH")
    athlete = await add_member(client, admin, "ATHLETE")
    space = await create_space(client, coach, athlete)
    await _notify_space(db, admin, space, coach)
    mine = (await client.get("/notifications", headers=athlete.headers)).json()["items"][0]
    stranger = await register_tenant(client)
    for attacker in (coach, stranger):
        response = await client.post(f"/notifications/{mine['id']}/read",
                                     headers=attacker.headers)
        assert response.status_code == 404
