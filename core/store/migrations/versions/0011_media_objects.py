"""media_objects: the bytes of attachments in PostgreSQL (scale mode), one row per sha256

Created on both stores like every table; only PostgreSQL uses it (``core.media.pg_store``): an embedded
hub keeps the bytes as files under its data dir (``core.media.store``).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'media_objects',
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('sha256', name=op.f('pk_media_objects')),
    )


def downgrade() -> None:
    op.drop_table('media_objects')
