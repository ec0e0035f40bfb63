"""Audit trail: append-only rows for sensitive actions, and reading them back."""

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditLog
from app.auth.caller import Caller
from app.infra.pagination import Page, after_cursor, page_of
from app.infra.request_meta import RequestMeta


def record(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    action: str,
    meta: RequestMeta | None,
    actor_user_id: uuid.UUID | None = None,
    target_type: str | None = None,
    target_id: object | None = None,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    """Add an audit row to the session's current transaction (it commits with the change)."""
    row = AuditLog(
        tenant_id=tenant_id,
        actor_user_id=actor_user_id,
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        ip=meta.ip if meta and meta.ip != "unknown" else None,
        request_id=meta.request_id if meta else None,
        details=details or {},
    )
    session.add(row)
    return row


def record_by(
    session: AsyncSession,
    caller: Caller,
    *,
    action: str,
    meta: RequestMeta | None,
    target_type: str,
    target_id: object,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    """`record` for an action a signed-in caller took in their own tenant."""
    return record(
        session,
        tenant_id=caller.tenant_id,
        action=action,
        meta=meta,
        actor_user_id=caller.user_id,
        target_type=target_type,
        target_id=target_id,
        details=details,
    )


async def list_audit_logs(
    session: AsyncSession, *, limit: int, cursor: str | None, action: str | None = None
) -> Page[AuditLog]:
    """Newest first. RLS scopes the rows to the session's tenant."""
    query = select(AuditLog)
    if action:
        query = query.where(AuditLog.action == action)
    query = after_cursor(query, AuditLog.created_at, AuditLog.id, cursor)
    async with session.begin():
        rows = list((await session.scalars(query.limit(limit + 1))).all())
    return page_of(rows, limit, lambda r: (r.created_at, r.id))
