import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field, model_validator

from app.infra.schemas import RequestBody, ResponseBody

Name = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=5000)]


class SpaceCreateIn(RequestBody):
    name: Name
    description: Description | None = None


class SpaceUpdateIn(RequestBody):
    name: Name | None = None
    description: Description | None = None

    @model_validator(mode="after")
    def _name_not_null(self) -> "SpaceUpdateIn":
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("name cannot be null")
        return self


class SpaceMemberIn(RequestBody):
    user_id: uuid.UUID


class SpaceOut(ResponseBody):
    id: uuid.UUID
    name: str
    description: str | None
    owner_id: uuid.UUID
    created_at: datetime


class SpaceDetailOut(SpaceOut):
    member_ids: list[uuid.UUID]
