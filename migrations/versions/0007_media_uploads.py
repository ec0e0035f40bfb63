"""Video review: multipart uploads, processing results, storage accounting, comments at a
moment of a video.

media_assets gains the upload (S3 multipart upload id, parts, expiry), what processing
found (duration, size, codecs, renditions, thumbnail, or an error), and its share of the
tenant's storage (reserved while uploading, stored once finalized). tenant_storage holds
each tenant's totals, backfilled from the assets that exist. Assets from before this
migration said "pending" for "waiting for the worker": that is now "processing".

Revision ID: 0007_media_uploads
Revises: 0006_tenant_manifest_uid
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from migrations.columns import UUID, created_column, id_column, tenant_column
from migrations.rls import tenant_table

revision: str = "0007_media_uploads"
down_revision: str | None = "0006_tenant_manifest_uid"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUS_CHECK = "status IN ('pending_upload', 'processing', 'ready', 'failed', 'expired')"
_TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    columns = [
        sa.Column("filename", sa.String(255), nullable=False, server_default=""),
        sa.Column("upload_id", sa.String(1024)),
        sa.Column("part_size", sa.BigInteger),
        sa.Column("part_count", sa.Integer),
        sa.Column("upload_expires_at", _TIMESTAMP),
        sa.Column("reserved_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("stored_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("duration_ms", sa.Integer),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("video_codec", sa.String(32)),
        sa.Column("audio_codec", sa.String(32)),
        sa.Column("renditions", pg.JSONB, nullable=False, server_default="[]"),
        sa.Column("thumbnail_key", sa.String(1024)),
        sa.Column("error_code", sa.String(64)),
        sa.Column("error_reason", sa.String(1000)),
        sa.Column("finalized_at", _TIMESTAMP),
        sa.Column("processed_at", _TIMESTAMP),
    ]
    for column in columns:
        op.add_column("media_assets", column)
    op.alter_column("media_assets", "status", server_default="pending_upload")

    op.create_table(
        "tenant_storage",
        sa.Column(
            "tenant_id",
            UUID,
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("used_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("reserved_bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.CheckConstraint("used_bytes >= 0", name="used_bytes"),
        sa.CheckConstraint("reserved_bytes >= 0", name="reserved_bytes"),
    )
    tenant_table("tenant_storage", privileges="SELECT, INSERT, UPDATE", tenant_readers=True)

    # Existing rows: the owner may see every tenant's rows only with FORCE lifted, which
    # lasts as long as this transaction's DDL does.
    op.execute("ALTER TABLE media_assets NO FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE tenant_storage NO FORCE ROW LEVEL SECURITY")
    op.execute("UPDATE media_assets SET status = 'processing' WHERE status = 'pending'")
    op.execute(
        "UPDATE media_assets SET stored_bytes = size_bytes "
        "WHERE status IN ('processing', 'ready', 'failed')"
    )
    op.execute(
        "INSERT INTO tenant_storage (tenant_id, used_bytes) "
        "SELECT tenant_id, sum(stored_bytes) FROM media_assets GROUP BY tenant_id"
    )
    op.execute("ALTER TABLE media_assets FORCE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE tenant_storage FORCE ROW LEVEL SECURITY")
    op.create_check_constraint(op.f("ck_media_assets_status"), "media_assets", STATUS_CHECK)

    op.create_table(
        "media_comments",
        id_column(),
        tenant_column(),
        sa.Column(
            "media_id",
            UUID,
            sa.ForeignKey("media_assets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("author_id", UUID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("at_ms", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("drawing", pg.JSONB),
        created_column(),
        sa.CheckConstraint("at_ms >= 0", name="at_ms"),
    )
    op.create_index(
        "ix_media_comments_tenant_id_media_id_at_ms",
        "media_comments",
        ["tenant_id", "media_id", "at_ms", "id"],
    )
    tenant_table("media_comments", tenant_readers=True)
    # Which posts carry an asset: who may see it (app/media/permissions.py).
    op.create_index("ix_posts_media_ids", "posts", ["media_ids"], postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("ix_posts_media_ids", "posts")
    op.drop_table("media_comments")
    op.drop_table("tenant_storage")
    op.drop_constraint(op.f("ck_media_assets_status"), "media_assets", type_="check")
    op.execute("ALTER TABLE media_assets NO FORCE ROW LEVEL SECURITY")
    op.execute(
        "UPDATE media_assets SET status = 'pending' "
        "WHERE status IN ('pending_upload', 'processing')"
    )
    op.execute("ALTER TABLE media_assets FORCE ROW LEVEL SECURITY")
    op.alter_column("media_assets", "status", server_default="pending")
    for column in (
        "processed_at",
        "finalized_at",
        "error_reason",
        "error_code",
        "thumbnail_key",
        "renditions",
        "audio_codec",
        "video_codec",
        "height",
        "width",
        "duration_ms",
        "stored_bytes",
        "reserved_bytes",
        "upload_expires_at",
        "part_count",
        "part_size",
        "upload_id",
        "filename",
    ):
        op.drop_column("media_assets", column)
