import uuid
from datetime import datetime

from app.infra.schemas import ResponseBody


class FeedTokenOut(ResponseBody):
    """A feed token as listed: never its secret."""

    id: uuid.UUID
    created_at: datetime
    revoked_at: datetime | None


class IssuedFeedTokenOut(FeedTokenOut):
    """A new feed token: `url` (and `token`) are shown this once; subscribe a calendar app
    to `url` (or `webcal_url`)."""

    token: str
    url: str
    webcal_url: str
