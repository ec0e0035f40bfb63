"""Opaque keyset cursors: (created_at, id) of the last item, newest-first order.

Keyset, not offset: new rows arriving at the top never shift a page, so paging neither
skips nor repeats.
"""

import base64
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from app.infra.errors import BadRequest


@dataclass(frozen=True)
class Page[T]:
    items: list[T]
    next_cursor: str | None


def encode_cursor(created_at: datetime, item_id: uuid.UUID) -> str:
    raw = orjson.dumps({"t": created_at.isoformat(), "i": str(item_id)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = orjson.loads(raw)
        return datetime.fromisoformat(data["t"]), uuid.UUID(data["i"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BadRequest("The cursor is not valid.") from exc


def after_cursor[Q: Select[*tuple[Any, ...]]](
    query: Q,
    created_col: InstrumentedAttribute[Any],
    id_col: InstrumentedAttribute[Any],
    cursor: str | None,
    *,
    oldest_first: bool = False,
) -> Q:
    """Order newest first (or oldest first) and start after `cursor` (if any)."""
    if cursor:
        created_at, item_id = decode_cursor(cursor)
        if oldest_first:
            query = query.where(
                or_(created_col > created_at, and_(created_col == created_at, id_col > item_id))
            )
        else:
            query = query.where(
                or_(created_col < created_at, and_(created_col == created_at, id_col < item_id))
            )
    if oldest_first:
        return query.order_by(created_col.asc(), id_col.asc())
    return query.order_by(created_col.desc(), id_col.desc())


def page_of[R](
    rows: Sequence[R], limit: int, key: Callable[[R], tuple[datetime, uuid.UUID]]
) -> Page[R]:
    """`rows` was fetched with limit + 1: the extra row only says another page exists."""
    items = list(rows[:limit])
    next_cursor = encode_cursor(*key(items[-1])) if len(rows) > limit and items else None
    return Page(items, next_cursor)
