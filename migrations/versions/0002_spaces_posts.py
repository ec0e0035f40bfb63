"""Spaces, posts, comments (issue 3)

Revision ID: 0002_spaces_posts
Revises: 0001_foundation
Create Date: 2026-11-25
"""
from collections.abc import Sequence

revision: str = "0002_spaces_posts"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
