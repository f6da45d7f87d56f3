"""event webhooks: the business's receivers of the hub's events, and every delivery to them (queue and log)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'event_endpoints',
        sa.Column('id', _BIGINT, autoincrement=True, nullable=False),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('event_types', sa.JSON(), nullable=False),
        sa.Column('secret', sa.String(length=128), nullable=False),
        sa.Column('include_text', sa.Boolean(), nullable=False),
        sa.Column('description', sa.String(length=200), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_event_endpoints')),
    )
    op.create_table(
        'event_deliveries',
        sa.Column('id', _BIGINT, autoincrement=True, nullable=False),
        sa.Column('webhook_id', sa.String(length=64), nullable=False),
        sa.Column('endpoint_id', _BIGINT, nullable=False),
        sa.Column('event_type', sa.String(length=32), nullable=False),
        sa.Column('customer_id', sa.String(length=36), nullable=True),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_status_code', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.String(length=200), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('lease_owner', sa.String(length=64), nullable=True),
        sa.Column('lease_token', sa.Integer(), nullable=False, server_default=sa.text('0')),
        sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ['endpoint_id'],
            ['event_endpoints.id'],
            name=op.f('fk_event_deliveries_endpoint_id_event_endpoints'),
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_event_deliveries')),
        sa.UniqueConstraint('webhook_id', name=op.f('uq_event_deliveries_webhook_id')),
    )
    op.create_index(
        op.f('ix_event_deliveries_customer_id'), 'event_deliveries', ['customer_id'], unique=False
    )
    op.create_index(
        'ix_event_deliveries_status_next_attempt_at',
        'event_deliveries',
        ['status', 'next_attempt_at'],
        unique=False,
    )
    op.create_index(
        'ix_event_deliveries_endpoint_id_id', 'event_deliveries', ['endpoint_id', 'id'], unique=False
    )


def downgrade() -> None:
    op.drop_index('ix_event_deliveries_endpoint_id_id', table_name='event_deliveries')
    op.drop_index('ix_event_deliveries_status_next_attempt_at', table_name='event_deliveries')
    op.drop_index(op.f('ix_event_deliveries_customer_id'), table_name='event_deliveries')
    op.drop_table('event_deliveries')
    op.drop_table('event_endpoints')
