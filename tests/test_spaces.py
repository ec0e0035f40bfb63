import pytest

from tests.factories import create_club, create_space, register_tenant

PROBLEM = "application/problem+json"


@pytest.fixture
async def club(client):
    return await create_club(
        client, athletes=("athlete",), others=("outsider",), other_coaches=("other_coach",)
    )


async def _space_ids(client, account):
    response = await client.get("/spaces", headers=account.headers)
    assert response.status_code == 200
    return {s["id"] for s in response.json()["items"]}


async def test_athletes_see_only_spaces_they_are_members_of(client, club):
    assert await _space_ids(client, club["athlete"]) == {club["space"]}
    assert await _space_ids(client, club["outsider"]) == set()


async def test_admin_sees_every_space_of_the_tenant(client, club):
    second = await create_space(client, club["other_coach"], name="Juniors")
    assert await _space_ids(client, club["admin"]) == {club["space"], second}


async def test_non_member_gets_404_for_a_space(client, club):
    response = await client.get(f"/spaces/{club['space']}", headers=club["outsider"].headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


async def test_member_reads_space_with_its_members(client, club):
    response = await client.get(f"/spaces/{club['space']}", headers=club["athlete"].headers)
    assert response.status_code == 200
    assert set(response.json()["member_ids"]) == {
        str(club["coach"].user_id),
        str(club["athlete"].user_id),
    }


async def test_athletes_cannot_create_spaces(client, club):
    response = await client.post("/spaces", headers=club["athlete"].headers, json={"name": "Mine"})
    assert response.status_code == 403


async def test_owner_coach_and_admin_can_rename_but_members_cannot(client, club):
    url = f"/spaces/{club['space']}"
    by_athlete = await client.patch(url, headers=club["athlete"].headers, json={"name": "X"})
    assert by_athlete.status_code == 403
    by_coach = await client.patch(url, headers=club["coach"].headers, json={"name": "Seniors"})
    assert by_coach.status_code == 200 and by_coach.json()["name"] == "Seniors"
    by_admin = await client.patch(
        url, headers=club["admin"].headers, json={"description": "Tue/Thu"}
    )
    assert by_admin.json() | {"name": "Seniors", "description": "Tue/Thu"} == by_admin.json()


async def test_other_coach_cannot_manage_a_space_they_do_not_own(client, club):
    # Not a member: the space does not exist for them.
    response = await client.patch(
        f"/spaces/{club['space']}", headers=club["other_coach"].headers, json={"name": "Mine"}
    )
    assert response.status_code == 404


async def test_coach_adds_and_removes_members(client, club):
    url = f"/spaces/{club['space']}/members"
    added = await client.post(
        url, headers=club["coach"].headers, json={"user_id": str(club["outsider"].user_id)}
    )
    assert added.status_code == 204
    assert club["space"] in await _space_ids(client, club["outsider"])
    removed = await client.delete(
        f"{url}/{club['outsider'].user_id}", headers=club["coach"].headers
    )
    assert removed.status_code == 204
    assert await _space_ids(client, club["outsider"]) == set()


async def test_member_cannot_add_others_but_may_leave(client, club):
    url = f"/spaces/{club['space']}/members"
    add = await client.post(
        url, headers=club["athlete"].headers, json={"user_id": str(club["outsider"].user_id)}
    )
    assert add.status_code == 403
    leave = await client.delete(f"{url}/{club['athlete'].user_id}", headers=club["athlete"].headers)
    assert leave.status_code == 204


async def test_owner_cannot_be_removed(client, club):
    response = await client.delete(
        f"/spaces/{club['space']}/members/{club['coach'].user_id}", headers=club["admin"].headers
    )
    assert response.status_code == 409


async def test_adding_a_user_of_another_tenant_is_404(client, club):
    stranger = await register_tenant(client)
    response = await client.post(
        f"/spaces/{club['space']}/members",
        headers=club["coach"].headers,
        json={"user_id": str(stranger.user_id)},
    )
    assert response.status_code == 404


async def test_server_owned_fields_are_rejected(client, club):
    stranger = await register_tenant(client)
    response = await client.post(
        "/spaces",
        headers=club["coach"].headers,
        json={
            "name": "Sneaky",
            "owner_id": str(club["athlete"].user_id),
            "tenant_id": str(stranger.tenant_id),
        },
    )
    assert response.status_code == 422
    fields = {tuple(e["loc"]) for e in response.json()["errors"]}
    assert fields == {("body", "owner_id"), ("body", "tenant_id")}


async def test_null_name_is_rejected_not_a_500(client, club):
    response = await client.patch(
        f"/spaces/{club['space']}", headers=club["coach"].headers, json={"name": None}
    )
    assert response.status_code == 422
