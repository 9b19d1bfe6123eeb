"""Catalogue status and background import jobs; an undo undoes one decision only once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Before the unique indexes on ``undo_of``, undo rows that repeated an earlier
undo of the same decision (made by concurrent undos before this release) keep
their label and time but lose their ``undo_of`` link, so no row is lost.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DECISION_TABLES = ("label_decisions", "vet_decisions")


def _unlink_repeated_undos(table: str) -> None:
    op.execute(
        f"UPDATE {table} SET undo_of = NULL WHERE undo_of IS NOT NULL AND id NOT IN "
        f"(SELECT first_id FROM (SELECT MIN(id) AS first_id FROM {table} "
        "WHERE undo_of IS NOT NULL GROUP BY undo_of) AS firsts)"
    )


def upgrade() -> None:
    with op.batch_alter_table("catalogues", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), server_default="ready", nullable=False)
        )
    op.create_table(
        "import_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows_done", sa.Integer(), nullable=False),
        sa.Column("rows_total", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=2000), nullable=False),
        sa.Column("catalogue_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["catalogue_id"],
            ["catalogues.id"],
            name=op.f("fk_import_jobs_catalogue_id_catalogues"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_import_jobs_created_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_jobs")),
    )
    for table in DECISION_TABLES:
        _unlink_repeated_undos(table)
        op.create_index(f"uq_{table}_undo_of", table, ["undo_of"], unique=True)


def downgrade() -> None:
    for table in DECISION_TABLES:
        op.drop_index(f"uq_{table}_undo_of", table_name=table)
    op.drop_table("import_jobs")
    with op.batch_alter_table("catalogues", schema=None) as batch_op:
        batch_op.drop_column("status")
