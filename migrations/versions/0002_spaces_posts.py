"""Spaces, members, posts, comments, and the media assets posts may carry.

Revision ID: 0002_spaces_posts
Revises: 0001_foundation
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from migrations.columns import UUID, created_column, id_column, tenant_column
from migrations.rls import tenant_table

revision: str = "0002_spaces_posts"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "media_assets",
        id_column(),
        tenant_column(),
        sa.Column("owner_id", UUID, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("content_type", sa.String(127), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("s3_key", sa.String(1024), nullable=False),
        created_column(),
    )
    op.create_index("ix_media_assets_tenant_id_owner_id", "media_assets", ["tenant_id", "owner_id"])
    tenant_table("media_assets")

    op.create_table(
        "spaces",
        id_column(),
        tenant_column(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("owner_id", UUID, sa.ForeignKey("users.id"), nullable=False),
        created_column(),
    )
    op.create_index("ix_spaces_tenant_id_created_at", "spaces", ["tenant_id", "created_at", "id"])
    tenant_table("spaces")

    op.create_table(
        "space_members",
        tenant_column(),
        sa.Column("space_id", UUID, sa.ForeignKey("spaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", UUID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        created_column(),
        sa.PrimaryKeyConstraint("tenant_id", "space_id", "user_id"),
    )
    op.create_index(
        "ix_space_members_tenant_id_user_id", "space_members", ["tenant_id", "user_id", "space_id"]
    )
    tenant_table("space_members")

    op.create_table(
        "posts",
        id_column(),
        tenant_column(),
        sa.Column("space_id", UUID, sa.ForeignKey("spaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("author_id", UUID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("media_ids", pg.ARRAY(UUID), nullable=False, server_default="{}"),
        created_column(),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.Column("deleted_by", UUID),
    )
    op.create_index(
        "ix_posts_tenant_id_space_id_created_at",
        "posts",
        ["tenant_id", "space_id", sa.text("created_at DESC"), sa.text("id DESC")],
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    tenant_table("posts")

    op.create_table(
        "comments",
        id_column(),
        tenant_column(),
        sa.Column("post_id", UUID, sa.ForeignKey("posts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("author_id", UUID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        created_column(),
    )
    op.create_index(
        "ix_comments_tenant_id_post_id_created_at",
        "comments",
        ["tenant_id", "post_id", "created_at", "id"],
    )
    tenant_table("comments")


def downgrade() -> None:
    for table in ("comments", "posts", "space_members", "spaces", "media_assets"):
        op.drop_table(table)
