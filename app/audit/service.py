"""Audit trail: append-only rows for sensitive actions, and reading them back.

`record` and `record_by` are steps: they add a row to a transaction another service opened,
so it commits (or not) with the change it reports. `list_audit_logs` is a unit of work.
"""

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditLog
from app.audit.permissions import require_admin
from app.auth.caller import Caller
from app.infra.db import Database
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
    """Add an audit row to the session's current transaction (it commits with the change).

    A step: never begins or commits."""
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
    """`record` for an action a signed-in caller took in their own tenant (a step too)."""
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
    db: Database, caller: Caller, *, limit: int, cursor: str | None, action: str | None = None
) -> Page[AuditLog]:
    """The caller's tenant's audit trail, newest first, optionally one action only (ADMIN
    only). RLS scopes the rows to the caller's tenant."""
    require_admin(caller)
    query = select(AuditLog)
    if action:
        query = query.where(AuditLog.action == action)
    query = after_cursor(query, AuditLog.created_at, AuditLog.id, cursor)
    async with db.transaction(caller.tenant_id, caller.user_id) as session:
        rows = list((await session.scalars(query.limit(limit + 1))).all())
    return page_of(rows, limit, lambda r: (r.created_at, r.id))
