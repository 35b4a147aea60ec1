"""bundle review: who approved a child's bundle (a person, under review: manual; empty: on receipt)

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bundles") as batch:
        batch.add_column(sa.Column("reviewer", sa.String(length=64), nullable=False, server_default=""))
        batch.add_column(sa.Column("reviewed_at", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("bundles") as batch:
        batch.drop_column("reviewed_at")
        batch.drop_column("reviewer")
