"""Auth hardening: email ownership, password reset, membership checks.

Sign-up and password-reset tokens are signed and expiring (app/auth/email_tokens.py), so
they need no table; a password reset records when it happened, and refresh tokens issued
before that stop working.

Revision ID: 0005_auth_hardening
Revises: 0004_tenant_reader_role
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_auth_hardening"
down_revision: str | None = "0004_tenant_reader_role"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("password_changed_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("users", "password_changed_at")
