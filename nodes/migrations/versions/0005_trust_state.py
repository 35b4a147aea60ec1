"""trust state: revocation lists in force and the certificate keys seen per (node, serial)

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revocation_lists",
        sa.Column("issuer", sa.String(length=12), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "node_keys",
        sa.Column("code", sa.String(length=12), nullable=False),
        sa.Column("serial", sa.BigInteger(), nullable=False),
        sa.Column("keyid", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=12), nullable=False),
        sa.Column("previous_keyid", sa.String(length=64), nullable=False),
        sa.Column("seen_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("code", "serial", name="pk_node_keys"),
    )


def downgrade() -> None:
    op.drop_table("node_keys")
    op.drop_table("revocation_lists")
