"""data intake: the task book, entry windows and unlocks, entries under review, their history, evidence files

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column('cycle', sa.String(length=16), nullable=False),
        sa.Column('unit', sa.String(length=32), nullable=False),
        sa.Column('indicator', sa.String(length=64), nullable=False),
        sa.Column('provider', sa.String(length=64), nullable=False),
        sa.Column('frequency', sa.String(length=1), nullable=False),
        sa.Column('confirm', sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column('minimum', sa.String(length=64), nullable=False, server_default=''),
        sa.Column('maximum', sa.String(length=64), nullable=False, server_default=''),
        sa.Column('updated_at', sa.BigInteger(), nullable=False),
        sa.Column('updated_by', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('cycle', 'unit', 'indicator', name='pk_tasks'),
    )
    op.create_table(
        "task_periods",
        sa.Column('cycle', sa.String(length=16), nullable=False),
        sa.Column('period', sa.String(length=16), nullable=False),
        sa.Column('opens_at', sa.BigInteger(), nullable=False),
        sa.Column('due_at', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('cycle', 'period', name='pk_task_periods'),
    )
    op.create_table(
        "task_unlocks",
        sa.Column('cycle', sa.String(length=16), nullable=False),
        sa.Column('period', sa.String(length=16), nullable=False),
        sa.Column('provider', sa.String(length=64), nullable=False),
        sa.Column('until', sa.BigInteger(), nullable=False),
        sa.Column('by', sa.String(length=64), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('cycle', 'period', 'provider', name='pk_task_unlocks'),
    )
    op.create_table(
        "entries",
        sa.Column('cycle', sa.String(length=16), nullable=False),
        sa.Column('period', sa.String(length=16), nullable=False),
        sa.Column('unit', sa.String(length=32), nullable=False),
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('value', sa.String(length=64), nullable=False),
        sa.Column('comment', sa.Text(), nullable=False, server_default=''),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('provider', sa.String(length=64), nullable=False),
        sa.Column('entered_by', sa.String(length=64), nullable=False),
        sa.Column('entered_at', sa.BigInteger(), nullable=False),
        sa.Column('submitted_at', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('late', sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column('decided_by', sa.String(length=64), nullable=False, server_default=''),
        sa.Column('decided_at', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('reason', sa.Text(), nullable=False, server_default=''),
        sa.Column('approved_value', sa.String(length=64), nullable=False, server_default=''),
        sa.PrimaryKeyConstraint('cycle', 'period', 'unit', 'key', name='pk_entries'),
    )
    op.create_table(
        "entry_history",
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('cycle', sa.String(length=16), nullable=False),
        sa.Column('period', sa.String(length=16), nullable=False),
        sa.Column('unit', sa.String(length=32), nullable=False),
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('at', sa.BigInteger(), nullable=False),
        sa.Column('actor', sa.String(length=64), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('before', sa.String(length=64), nullable=False),
        sa.Column('value', sa.String(length=64), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
    )
    op.create_table(
        "attachments",
        sa.Column('sha256', sa.String(length=64), primary_key=True),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('content_type', sa.String(length=128), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('uploaded_by', sa.String(length=64), nullable=False),
        sa.Column('uploaded_at', sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "attachment_links",
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('cycle', sa.String(length=16), nullable=False),
        sa.Column('period', sa.String(length=16), nullable=False),
        sa.Column('unit', sa.String(length=32), nullable=False),
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('sha256', 'cycle', 'period', 'unit', 'key', name='pk_attachment_links'),
    )


def downgrade() -> None:
    op.drop_table("attachment_links")
    op.drop_table("attachments")
    op.drop_table("entry_history")
    op.drop_table("entries")
    op.drop_table("task_unlocks")
    op.drop_table("task_periods")
    op.drop_table("tasks")
