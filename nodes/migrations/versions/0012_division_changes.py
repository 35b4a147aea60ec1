"""区划调整: the signed division change lists a node accepted, in acceptance order

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "division_changes",
        sa.Column('position', sa.Integer(), nullable=False, primary_key=True, autoincrement=True),
        sa.Column('issuer', sa.String(length=12), nullable=False),
        sa.Column('seq', sa.BigInteger(), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.Column('envelope', sa.LargeBinary(), nullable=False),
        sa.Column('sender', sa.String(length=128), nullable=False),
        sa.Column('accepted_at', sa.BigInteger(), nullable=False),
        sa.Column('base', sa.String(length=32), nullable=False),
        sa.UniqueConstraint('issuer', 'seq', name='uq_division_change_seq'),
    )


def downgrade() -> None:
    op.drop_table("division_changes")
