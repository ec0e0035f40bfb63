"""Column helpers the migrations share: the id, tenant and created_at columns of a table.

They mirror `app/infra/columns.py` (the models' side), which tests/test_migrations.py
checks against the migrated schema. Applied migrations already depend on these
definitions: a table that needs another shape gets a new helper, never a changed one.
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

UUID = pg.UUID(as_uuid=True)
NOW = sa.text("now()")


def id_column() -> sa.Column:
    """`id uuid PRIMARY KEY DEFAULT gen_random_uuid()`."""
    return sa.Column("id", UUID, primary_key=True, server_default=sa.text("gen_random_uuid()"))


def tenant_column() -> sa.Column:
    """`tenant_id uuid NOT NULL`, deleted with its tenant."""
    return sa.Column(
        "tenant_id", UUID, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
    )


def created_column() -> sa.Column:
    """`created_at timestamptz NOT NULL DEFAULT now()`."""
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False)
