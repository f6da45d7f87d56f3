"""leases with fencing on the work tables (inbox, outbox, memory jobs), and named leases for rounds

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_WORK = ('inbox', 'outbox', 'memory_jobs')


def upgrade() -> None:
    for table in _WORK:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('lease_owner', sa.String(length=64), nullable=True))
            batch_op.add_column(
                sa.Column('lease_token', sa.Integer(), nullable=False, server_default=sa.text('0'))
            )
            batch_op.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        'leases',
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('owner', sa.String(length=64), nullable=False),
        sa.Column('token', sa.Integer(), nullable=False),
        sa.Column('until', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_leases')),
    )


def downgrade() -> None:
    op.drop_table('leases')
    for table in _WORK:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('lease_until')
            batch_op.drop_column('lease_token')
            batch_op.drop_column('lease_owner')
