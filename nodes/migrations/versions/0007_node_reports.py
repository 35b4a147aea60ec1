"""node reports: each descendant's newest signed status report (cascade state, audit chain head)

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_reports",
        sa.Column("node", sa.String(length=12), primary_key=True),
        sa.Column("via", sa.String(length=12), nullable=False),
        sa.Column("reported_at", sa.BigInteger(), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.Column("audit_hash", sa.String(length=64), nullable=False),
        sa.Column("message", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("node_reports")
