"""the close of the year: publications (公示/final), appeals, rectification items, public comments,
results-use lists, feedback reports

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "publications",
        sa.Column('digest', sa.String(length=64), nullable=False, primary_key=True),
        sa.Column('node', sa.String(length=12), nullable=False),
        sa.Column('cycle', sa.String(length=16), nullable=False),
        sa.Column('period', sa.String(length=16), nullable=False),
        sa.Column('unit_class', sa.String(length=64), nullable=False),
        sa.Column('framework_digest', sa.String(length=64), nullable=False),
        sa.Column('version', sa.BigInteger(), nullable=False),
        sa.Column('state', sa.String(length=12), nullable=False),
        sa.Column('public', sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column('opens_at', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('closes_at', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('reason', sa.Text(), nullable=False, server_default=''),
        sa.Column('role', sa.String(length=8), nullable=False),
        sa.Column('envelope', sa.LargeBinary(), nullable=False),
        sa.Column('proof', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=False),
        sa.UniqueConstraint('node', 'cycle', 'period', 'unit_class', 'version', name='uq_publication_version'),
    )
    op.create_table(
        "appeals",
        sa.Column('id', sa.Integer(), nullable=False, primary_key=True, autoincrement=True),
        sa.Column('cycle', sa.String(length=16), nullable=False),
        sa.Column('period', sa.String(length=16), nullable=False),
        sa.Column('unit', sa.String(length=32), nullable=False),
        sa.Column('publication', sa.String(length=64), nullable=False),
        sa.Column('target', sa.String(length=8), nullable=False),
        sa.Column('indicator', sa.String(length=64), nullable=False, server_default=''),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('evidence', sa.Text(), nullable=False, server_default='[]'),
        sa.Column('status', sa.String(length=12), nullable=False),
        sa.Column('filed_by', sa.String(length=64), nullable=False),
        sa.Column('filed_at', sa.BigInteger(), nullable=False),
        sa.Column('decide_by', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('reviewer', sa.String(length=64), nullable=False, server_default=''),
        sa.Column('assigned_by', sa.String(length=64), nullable=False, server_default=''),
        sa.Column('assigned_at', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('decision', sa.Text(), nullable=False, server_default=''),
        sa.Column('decided_by', sa.String(length=64), nullable=False, server_default=''),
        sa.Column('decided_at', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('before', sa.Text(), nullable=False, server_default='{}'),
        sa.Column('after', sa.Text(), nullable=False, server_default='{}'),
    )
    op.create_table(
        "rectifications",
        sa.Column('id', sa.Integer(), nullable=False, primary_key=True, autoincrement=True),
        sa.Column('cycle', sa.String(length=16), nullable=False),
        sa.Column('unit', sa.String(length=32), nullable=False),
        sa.Column('source', sa.String(length=8), nullable=False),
        sa.Column('ref', sa.String(length=64), nullable=False, server_default=''),
        sa.Column('title', sa.Text(), nullable=False),
        sa.Column('measure', sa.Text(), nullable=False, server_default=''),
        sa.Column('owner', sa.String(length=64), nullable=False),
        sa.Column('deadline', sa.BigInteger(), nullable=False),
        sa.Column('status', sa.String(length=8), nullable=False),
        sa.Column('evidence', sa.Text(), nullable=False, server_default='[]'),
        sa.Column('closure', sa.Text(), nullable=False, server_default=''),
        sa.Column('created_by', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.Column('closed_by', sa.String(length=64), nullable=False, server_default=''),
        sa.Column('closed_at', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('carried_from', sa.Integer(), nullable=False, server_default='0'),
    )
    op.create_table(
        "public_comments",
        sa.Column('id', sa.Integer(), nullable=False, primary_key=True, autoincrement=True),
        sa.Column('cycle', sa.String(length=16), nullable=False),
        sa.Column('unit', sa.String(length=32), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('contact', sa.String(length=128), nullable=False, server_default=''),
        sa.Column('sender', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.Column('status', sa.String(length=8), nullable=False),
        sa.Column('answer', sa.Text(), nullable=False, server_default=''),
        sa.Column('answered_by', sa.String(length=64), nullable=False, server_default=''),
        sa.Column('answered_at', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('rectification', sa.Integer(), nullable=False, server_default='0'),
    )
    op.create_table(
        "use_lists",
        sa.Column('digest', sa.String(length=64), nullable=False, primary_key=True),
        sa.Column('cycle', sa.String(length=16), nullable=False),
        sa.Column('list', sa.String(length=32), nullable=False),
        sa.Column('version', sa.BigInteger(), nullable=False),
        sa.Column('envelope', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.BigInteger(), nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=False),
        sa.UniqueConstraint('cycle', 'list', 'version', name='uq_use_list_version'),
    )
    op.create_table(
        "feedback_reports",
        sa.Column('cycle', sa.String(length=16), nullable=False),
        sa.Column('period', sa.String(length=16), nullable=False),
        sa.Column('unit', sa.String(length=32), nullable=False),
        sa.Column('publication', sa.String(length=64), nullable=False),
        sa.Column('pdf', sa.LargeBinary(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('generated_at', sa.BigInteger(), nullable=False),
        sa.Column('generated_by', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('cycle', 'period', 'unit', name='pk_feedback_reports'),
    )


def downgrade() -> None:
    op.drop_table("feedback_reports")
    op.drop_table("use_lists")
    op.drop_table("public_comments")
    op.drop_table("rectifications")
    op.drop_table("appeals")
    op.drop_table("publications")
