"""bundle status: a child's bundle joins its chain even when its content is rejected

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bundles") as batch:
        batch.add_column(sa.Column("status", sa.String(length=16), nullable=False, server_default="accepted"))
        batch.add_column(sa.Column("reason", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("bundles") as batch:
        batch.drop_column("reason")
        batch.drop_column("status")
