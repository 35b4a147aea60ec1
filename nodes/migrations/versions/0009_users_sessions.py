"""users and browser sessions (issue 10: people in the system)

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("login", sa.String(length=64), primary_key=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("org", sa.String(length=64), nullable=False, server_default=""),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("units", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("indicators", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("password_hash", sa.Text(), nullable=False, server_default=""),
        sa.Column("must_change", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("oidc_subject", sa.String(length=255), nullable=False, server_default=""),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked_until", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(length=64), primary_key=True),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_sessions_login", "sessions", ["login"])


def downgrade() -> None:
    op.drop_index("ix_sessions_login", table_name="sessions")
    op.drop_table("sessions")
    op.drop_table("users")
