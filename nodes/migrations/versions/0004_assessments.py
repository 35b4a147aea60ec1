"""assessments: what an evaluating node records about its units besides reported values

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "assessments",
        sa.Column("unit", sa.String(length=12), nullable=False),
        sa.Column("cycle", sa.String(length=16), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("unit", "cycle", "period", name="pk_assessments"),
    )


def downgrade() -> None:
    op.drop_table("assessments")
