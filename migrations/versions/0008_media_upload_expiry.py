"""Stale uploads: the scheduler finds uploads never finalized without reading tenant tables.

The scheduler runs as the relay role, which may read no tenant table, and must stay so. It
asks `expired_media_uploads(limit)`, an owner-defined function that returns only the
(tenant_id, media_id) of assets still pending_upload past their upload_expires_at, and
then handles each asset in that tenant's transaction as the runtime role.

media_assets is FORCEd, so the owner is subject to its policies too, and outside a
tenant's transaction sees no rows. One permissive SELECT policy admits the owner to
pending uploads only while the session is the relay's, that is only inside an
owner-defined function the relay may call (session_user survives SECURITY DEFINER and
only a superuser can change it). The owner's own sessions (migrations, the operator) gain
nothing, and no other role is named by it.

Revision ID: 0008_media_upload_expiry
Revises: 0007_media_uploads
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.infra.settings import get_settings
from migrations.rls import literal, relay_role

revision: str = "0008_media_upload_expiry"
down_revision: str | None = "0007_media_uploads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    relay_name = literal(get_settings().db_relay_role)
    op.execute(
        "CREATE POLICY media_expiry_scan ON media_assets AS PERMISSIVE FOR SELECT "
        f"TO CURRENT_USER USING (session_user = {relay_name} AND status = 'pending_upload')"
    )
    op.execute(
        """
        CREATE FUNCTION expired_media_uploads(p_limit integer)
        RETURNS TABLE (tenant_id uuid, media_id uuid)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
            SELECT a.tenant_id, a.id FROM public.media_assets a
            WHERE a.status = 'pending_upload' AND a.upload_expires_at < now()
            ORDER BY a.upload_expires_at
            LIMIT greatest(p_limit, 0)
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION expired_media_uploads(integer) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION expired_media_uploads(integer) TO {relay_role()}")
    # The scan across tenants, oldest first: only uploads under way are in it.
    op.create_index(
        "ix_media_assets_pending_upload_expires_at",
        "media_assets",
        ["upload_expires_at"],
        postgresql_where=sa.text("status = 'pending_upload'"),
    )


def downgrade() -> None:
    op.drop_index("ix_media_assets_pending_upload_expires_at", "media_assets")
    op.execute("DROP FUNCTION IF EXISTS expired_media_uploads(integer)")
    op.execute("DROP POLICY IF EXISTS media_expiry_scan ON media_assets")
