"""The grid view's order of similar candidates: a rank per catalogue row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("catalogues", schema=None) as batch_op:
        batch_op.add_column(sa.Column("similarity_spectra", sa.Integer(), nullable=True))
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("similarity_rank", sa.Integer(), nullable=True))
    op.create_index(
        "ix_predictions_catalogue_similarity",
        "predictions",
        ["catalogue_id", "similarity_rank", "predicted_class"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_predictions_catalogue_similarity", table_name="predictions")
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_column("similarity_rank")
    with op.batch_alter_table("catalogues", schema=None) as batch_op:
        batch_op.drop_column("similarity_spectra")
