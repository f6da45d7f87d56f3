"""shared limits: rate buckets (flood control, pacing) and limit windows (caps, single-use marks)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'rate_buckets',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('tat', sa.Double(), nullable=False),
        sa.Column('granted', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_rate_buckets')),
    )
    op.create_index(op.f('ix_rate_buckets_tat'), 'rate_buckets', ['tat'], unique=False)
    op.create_table(
        'limit_windows',
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('stamps', sa.JSON(), nullable=False),
        sa.Column('expires_at', sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_limit_windows')),
    )
    op.create_index(op.f('ix_limit_windows_expires_at'), 'limit_windows', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_limit_windows_expires_at'), table_name='limit_windows')
    op.drop_table('limit_windows')
    op.drop_index(op.f('ix_rate_buckets_tat'), table_name='rate_buckets')
    op.drop_table('rate_buckets')
