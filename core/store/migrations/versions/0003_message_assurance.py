"""message-level sender assurance, private conversations, reply policy; vouched turns

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sender_assurance', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('private', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('reply_policy', sa.String(length=16), nullable=True))
    with op.batch_alter_table('turns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('vouched', sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('turns', schema=None) as batch_op:
        batch_op.drop_column('vouched')
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_column('reply_policy')
        batch_op.drop_column('private')
        batch_op.drop_column('sender_assurance')
