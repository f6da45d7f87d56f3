"""typed opt-out keyword and shared contact on inbox rows (were untyped extras)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('control', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('shared_contact', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_column('shared_contact')
        batch_op.drop_column('control')
