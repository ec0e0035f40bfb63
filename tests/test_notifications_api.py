import uuid

import pytest

from app.notifications import service
from tests.factories import create_club, register_tenant


@pytest.fixture
async def club(client, db):
    """A space with one athlete, who has been notified twice of the coach's posts."""
    club = await create_club(client, others=())
    for _ in range(2):
        async with db.transaction(club["admin"].tenant_id) as session:
            await service.notify(
                session,
                tenant_id=club["admin"].tenant_id,
                event_id=uuid.uuid4(),
                event_type="post.created",
                payload={
                    "space_id": club["space"],
                    "author_id": str(club["coach"].user_id),
                    "post_id": str(uuid.uuid4()),
                },
            )
    return club


async def test_unread_filter_and_mark_read(client, club):
    athlete = club["athlete"]
    items = (await client.get("/notifications", headers=athlete.headers)).json()["items"]
    assert len(items) == 2
    read = await client.post(f"/notifications/{items[0]['id']}/read", headers=athlete.headers)
    assert read.status_code == 200 and read.json()["read_at"] is not None
    unread = (
        await client.get("/notifications", headers=athlete.headers, params={"unread": "true"})
    ).json()["items"]
    assert [n["id"] for n in unread] == [items[1]["id"]]


async def test_the_author_is_not_notified_of_their_own_post(client, club):
    assert (await client.get("/notifications", headers=club["coach"].headers)).json()["items"] == []


async def test_someone_elses_notification_is_404(client, club):
    mine = (await client.get("/notifications", headers=club["athlete"].headers)).json()["items"][0]
    stranger = await register_tenant(client)
    for attacker in (club["coach"], stranger):
        response = await client.post(f"/notifications/{mine['id']}/read", headers=attacker.headers)
        assert response.status_code == 404
