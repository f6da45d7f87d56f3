"""attachments: the files of messages, in and out (content-addressed bytes in the media store)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'attachments',
        sa.Column('id', _BIGINT, autoincrement=True, nullable=False),
        sa.Column('customer_id', sa.String(length=36), nullable=True),
        sa.Column('inbox_id', _BIGINT, nullable=True),
        sa.Column('outbox_id', _BIGINT, nullable=True),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('direction', sa.String(length=8), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('media_type', sa.String(length=100), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=200), nullable=True),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_attachments')),
        sa.UniqueConstraint('inbox_id', 'position', name=op.f('uq_attachments_inbox_id_position')),
    )
    for column in ('customer_id', 'inbox_id', 'outbox_id', 'sha256'):
        op.create_index(op.f(f'ix_attachments_{column}'), 'attachments', [column], unique=False)


def downgrade() -> None:
    for column in ('customer_id', 'inbox_id', 'outbox_id', 'sha256'):
        op.drop_index(op.f(f'ix_attachments_{column}'), table_name='attachments')
    op.drop_table('attachments')
