"""handoffs, operators and their sessions and actions; turns.operator / turns.recalled; outbox.origin

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_OPEN = sa.text("status != 'closed'")


def upgrade() -> None:
    op.create_table(
        'handoffs',
        sa.Column('id', _BIGINT, autoincrement=True, nullable=False),
        sa.Column('customer_id', sa.String(length=36), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('requested_by', sa.String(length=16), nullable=False),
        sa.Column('operator', sa.String(length=64), nullable=True),
        sa.Column('note', sa.String(length=500), nullable=True),
        sa.Column('channel', sa.String(length=16), nullable=True),
        sa.Column('inbox_id', _BIGINT, nullable=True),
        sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('taken_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('closed_by', sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_handoffs')),
    )
    op.create_index(op.f('ix_handoffs_customer_id'), 'handoffs', ['customer_id'], unique=False)
    op.create_index('ix_handoffs_status_opened_at', 'handoffs', ['status', 'opened_at'], unique=False)
    op.create_index(
        'uq_handoffs_open_customer',
        'handoffs',
        ['customer_id'],
        unique=True,
        sqlite_where=_OPEN,
        postgresql_where=_OPEN,
    )
    op.create_table(
        'operators',
        sa.Column('id', _BIGINT, autoincrement=True, nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('password_hash', sa.String(length=255), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_operators')),
        sa.UniqueConstraint('name', name=op.f('uq_operators_name')),
    )
    op.create_table(
        'operator_sessions',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('operator_id', _BIGINT, nullable=False),
        sa.Column('csrf', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['operator_id'],
            ['operators.id'],
            name=op.f('fk_operator_sessions_operator_id_operators'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_operator_sessions')),
    )
    op.create_index(
        op.f('ix_operator_sessions_operator_id'), 'operator_sessions', ['operator_id'], unique=False
    )
    op.create_index(op.f('ix_operator_sessions_expires_at'), 'operator_sessions', ['expires_at'], unique=False)
    op.create_table(
        'operator_actions',
        sa.Column('id', _BIGINT, autoincrement=True, nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('operator', sa.String(length=64), nullable=False),
        sa.Column('action', sa.String(length=32), nullable=False),
        sa.Column('customer_id', sa.String(length=36), nullable=True),
        sa.Column('subject', sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_operator_actions')),
    )
    op.create_index(op.f('ix_operator_actions_customer_id'), 'operator_actions', ['customer_id'], unique=False)
    with op.batch_alter_table('turns') as batch:
        batch.add_column(sa.Column('operator', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('recalled', sa.JSON(), nullable=True))
    with op.batch_alter_table('outbox') as batch:
        batch.add_column(sa.Column('origin', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.drop_column('origin')
    with op.batch_alter_table('turns') as batch:
        batch.drop_column('recalled')
        batch.drop_column('operator')
    op.drop_index(op.f('ix_operator_actions_customer_id'), table_name='operator_actions')
    op.drop_table('operator_actions')
    op.drop_index(op.f('ix_operator_sessions_expires_at'), table_name='operator_sessions')
    op.drop_index(op.f('ix_operator_sessions_operator_id'), table_name='operator_sessions')
    op.drop_table('operator_sessions')
    op.drop_table('operators')
    op.drop_index('uq_handoffs_open_customer', table_name='handoffs')
    op.drop_index('ix_handoffs_status_opened_at', table_name='handoffs')
    op.drop_index(op.f('ix_handoffs_customer_id'), table_name='handoffs')
    op.drop_table('handoffs')
