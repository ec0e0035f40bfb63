"""Auth hardening: email ownership, password reset, membership checks.

Revision ID: 0005_auth_hardening
Revises: 0004_tenant_reader_role
Create Date: 2026-11-29
"""

from collections.abc import Sequence

revision: str = "0005_auth_hardening"
down_revision: str | None = "0004_tenant_reader_role"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
