import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.deps import CallerDep, DatabaseDep, MetaDep
from app.infra.schemas import PageOut
from app.spaces import service
from app.spaces.schemas import (
    SpaceCreateIn,
    SpaceDetailOut,
    SpaceMemberIn,
    SpaceOut,
    SpaceUpdateIn,
)

router = APIRouter(prefix="/spaces", tags=["spaces"])


def _detail(detail: service.SpaceDetail) -> SpaceDetailOut:
    return SpaceDetailOut(
        **SpaceOut.model_validate(detail.space).model_dump(), member_ids=detail.member_ids
    )


@router.get("", response_model=PageOut[SpaceOut])
async def list_spaces(
    caller: CallerDep,
    db: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> PageOut[SpaceOut]:
    """Spaces the caller may see: all of the tenant's for an ADMIN, else their own."""
    page = await service.list_spaces(db, caller, limit=limit, cursor=cursor)
    return PageOut[SpaceOut](
        items=[SpaceOut.model_validate(s) for s in page.items], next_cursor=page.next_cursor
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SpaceDetailOut)
async def create_space(body: SpaceCreateIn, caller: CallerDep, db: DatabaseDep) -> SpaceDetailOut:
    return _detail(
        await service.create_space(db, caller, name=body.name, description=body.description)
    )


@router.get("/{space_id}", response_model=SpaceDetailOut)
async def get_space(space_id: uuid.UUID, caller: CallerDep, db: DatabaseDep) -> SpaceDetailOut:
    return _detail(await service.get_space(db, caller, space_id))


@router.patch("/{space_id}", response_model=SpaceOut)
async def update_space(
    space_id: uuid.UUID, body: SpaceUpdateIn, caller: CallerDep, db: DatabaseDep
) -> SpaceOut:
    space = await service.update_space(
        db, caller, space_id, changes=body.model_dump(exclude_unset=True)
    )
    return SpaceOut.model_validate(space)


@router.post("/{space_id}/members", status_code=status.HTTP_204_NO_CONTENT)
async def add_member(
    space_id: uuid.UUID,
    body: SpaceMemberIn,
    caller: CallerDep,
    db: DatabaseDep,
    meta: MetaDep,
) -> Response:
    await service.add_member(db, caller, space_id, body.user_id, meta)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/{space_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_member(
    space_id: uuid.UUID,
    user_id: uuid.UUID,
    caller: CallerDep,
    db: DatabaseDep,
    meta: MetaDep,
) -> Response:
    await service.remove_member(db, caller, space_id, user_id, meta)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
