"""A managed tenant remembers which Tenant object manages it.

The Tenant CRD is cluster-scoped and its objects are named freely, so two objects (or one
deleted and re-created, or two clusters on one database) can name the same slug. The
operator records the first claimant's metadata.uid on the row; any other object with that
slug is refused and its deletion touches nothing of the first one's. NULL: no claim (rows
from before this migration, the seed, `courtside tenants apply`, a Tenant deleted with
Retain), taken by the next Tenant object that reconciles the slug.

Revision ID: 0006_tenant_manifest_uid
Revises: 0005_auth_hardening
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.columns import UUID

revision: str = "0006_tenant_manifest_uid"
down_revision: str | None = "0005_auth_hardening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("manifest_uid", UUID))


def downgrade() -> None:
    op.drop_column("tenants", "manifest_uid")
