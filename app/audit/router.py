"""HTTP for the audit trail; the service decides who may read it (app/audit/permissions.py)."""

from typing import Annotated

from fastapi import APIRouter, Query

from app.audit import service
from app.audit.schemas import AuditLogOut
from app.deps import CallerDep, DatabaseDep
from app.infra.schemas import PageOut

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/audit", response_model=PageOut[AuditLogOut])
async def audit_logs(
    caller: CallerDep,
    db: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> PageOut[AuditLogOut]:
    """The organisation's audit trail, newest first (ADMIN only)."""
    page = await service.list_audit_logs(db, caller, limit=limit, cursor=cursor, action=action)
    return PageOut[AuditLogOut](
        items=[AuditLogOut.model_validate(r) for r in page.items], next_cursor=page.next_cursor
    )
