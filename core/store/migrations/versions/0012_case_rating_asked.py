"""cases.rating_asked_at: when the customer was asked to rate the case (the bot's resolution reply, or a
person's resolution that told the customer); a digit is taken as the rating only within a day of it

Cases the bot resolved before this revision asked with their resolution: they get their resolution time.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cases') as batch:
        batch.add_column(sa.Column('rating_asked_at', sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE cases SET rating_asked_at = resolved_at "
        "WHERE status = 'resolved' AND resolved_by IN ('assistant', 'rules')"
    )


def downgrade() -> None:
    with op.batch_alter_table('cases') as batch:
        batch.drop_column('rating_asked_at')
