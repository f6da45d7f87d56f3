"""identity ledger, link challenges, memory moves

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('merged_into', sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f('ix_customers_merged_into'), ['merged_into'], unique=False)
    with op.batch_alter_table('identities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))

    op.create_table('identity_ledger',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.Column('address', sa.String(length=320), nullable=True),
    sa.Column('customer_id', sa.String(length=36), nullable=True),
    sa.Column('from_customer_id', sa.String(length=36), nullable=True),
    sa.Column('assurance', sa.String(length=32), nullable=True),
    sa.Column('method', sa.String(length=64), nullable=True),
    sa.Column('addresses', sa.JSON(), nullable=False),
    sa.Column('undoes', _ID, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_ledger'))
    )
    with op.batch_alter_table('identity_ledger', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_identity_ledger_address'), ['address'], unique=False)
        batch_op.create_index(batch_op.f('ix_identity_ledger_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_identity_ledger_from_customer_id'), ['from_customer_id'], unique=False)

    op.create_table('link_challenges',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('requester', sa.String(length=320), nullable=False),
    sa.Column('claimed', sa.String(length=320), nullable=False),
    sa.Column('request_inbox_id', _ID, nullable=True),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('salt', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_link_challenges')),
    sa.UniqueConstraint('request_inbox_id', name=op.f('uq_link_challenges_request_inbox_id'))
    )
    with op.batch_alter_table('link_challenges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_link_challenges_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_link_challenges_requester'), ['requester'], unique=False)
        batch_op.create_index(batch_op.f('ix_link_challenges_claimed'), ['claimed'], unique=False)

    op.create_table('memory_moves',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('event_id', _ID, nullable=False),
    sa.Column('from_customer_id', sa.String(length=36), nullable=False),
    sa.Column('to_customer_id', sa.String(length=36), nullable=False),
    sa.Column('handles', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_memory_moves'))
    )
    with op.batch_alter_table('memory_moves', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_memory_moves_event_id'), ['event_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_memory_moves_status'), ['status'], unique=False)


def downgrade() -> None:
    op.drop_table('memory_moves')
    op.drop_table('link_challenges')
    op.drop_table('identity_ledger')
    with op.batch_alter_table('identities', schema=None) as batch_op:
        batch_op.drop_column('updated_at')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customers_merged_into'))
        batch_op.drop_column('merged_into')
