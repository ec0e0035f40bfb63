"""Event pipeline: notifications, outbox NOTIFY (issue 6)

Revision ID: 0003_event_pipeline
Revises: 0002_spaces_posts
Create Date: 2026-11-25
"""
from collections.abc import Sequence

revision: str = "0003_event_pipeline"
down_revision: str | None = "0002_spaces_posts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
