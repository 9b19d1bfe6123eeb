"""Initial schema: users, sessions, spectra, label decisions, catalogues, predictions, vetting.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spectra",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ident", sa.String(length=512), nullable=False),
        sa.Column("archive", sa.String(length=32), nullable=False),
        sa.Column("form", sa.String(length=32), nullable=False),
        sa.Column("object", sa.String(length=256), nullable=False),
        sa.Column("ra", sa.Float(), nullable=True),
        sa.Column("dec", sa.Float(), nullable=True),
        sa.Column("mjd", sa.Float(), nullable=True),
        sa.Column("date_obs", sa.String(length=64), nullable=False),
        sa.Column("snr", sa.Float(), nullable=True),
        sa.Column("source", sa.String(length=1024), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("medium", sa.String(length=8), nullable=True),
        sa.Column("flux_unit", sa.String(length=32), nullable=False),
        sa.Column("quality", sa.Integer(), nullable=False),
        sa.Column("reference_label", sa.String(length=16), nullable=True),
        sa.Column("wave", sa.LargeBinary(), nullable=True),
        sa.Column("flux", sa.LargeBinary(), nullable=True),
        sa.Column("x", sa.LargeBinary(), nullable=False),
        sa.Column("grid_start_aa", sa.Float(), nullable=False),
        sa.Column("grid_stop_aa", sa.Float(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("imported_from", sa.String(length=1024), nullable=False),
        sa.Column("imported_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spectra")),
        sa.UniqueConstraint("ident", name=op.f("uq_spectra_ident")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "catalogues",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("source", sa.String(length=1024), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("model_id", sa.String(length=128), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_catalogues_created_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalogues")),
    )
    op.create_table(
        "label_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("spectrum_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=True),
        sa.Column("undo_of", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["spectrum_id"],
            ["spectra.id"],
            name=op.f("fk_label_decisions_spectrum_id_spectra"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["undo_of"],
            ["label_decisions.id"],
            name=op.f("fk_label_decisions_undo_of_label_decisions"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_label_decisions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_decisions")),
    )
    with op.batch_alter_table("label_decisions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_label_decisions_spectrum_user", ["spectrum_id", "user_id", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_label_decisions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_sessions")),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sessions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("catalogue_id", sa.Integer(), nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("ident", sa.String(length=512), nullable=False),
        sa.Column("spectrum_id", sa.Integer(), nullable=True),
        sa.Column("object", sa.String(length=256), nullable=False),
        sa.Column("predicted_class", sa.String(length=16), nullable=False),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("novelty", sa.Float(), nullable=True),
        sa.Column("entropy", sa.Float(), nullable=True),
        sa.Column("margin", sa.Float(), nullable=True),
        sa.Column("quality", sa.Integer(), nullable=False),
        sa.Column("quality_flags", sa.String(length=256), nullable=False),
        sa.Column("probs", sa.JSON(), nullable=False),
        sa.Column("row", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["catalogue_id"],
            ["catalogues.id"],
            name=op.f("fk_predictions_catalogue_id_catalogues"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["spectrum_id"],
            ["spectra.id"],
            name=op.f("fk_predictions_spectrum_id_spectra"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
    )
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_predictions_catalogue_id"), ["catalogue_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_predictions_ident"), ["ident"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_predictions_spectrum_id"), ["spectrum_id"], unique=False
        )

    op.create_table(
        "vet_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=True),
        sa.Column("undo_of", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.id"],
            name=op.f("fk_vet_decisions_prediction_id_predictions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["undo_of"], ["vet_decisions.id"], name=op.f("fk_vet_decisions_undo_of_vet_decisions")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_vet_decisions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vet_decisions")),
    )
    with op.batch_alter_table("vet_decisions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_vet_decisions_prediction_user", ["prediction_id", "user_id", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_vet_decisions_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("vet_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vet_decisions_user_id"))
        batch_op.drop_index("ix_vet_decisions_prediction_user")

    op.drop_table("vet_decisions")
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_predictions_spectrum_id"))
        batch_op.drop_index(batch_op.f("ix_predictions_ident"))
        batch_op.drop_index(batch_op.f("ix_predictions_catalogue_id"))

    op.drop_table("predictions")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessions_user_id"))

    op.drop_table("sessions")
    with op.batch_alter_table("label_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_label_decisions_user_id"))
        batch_op.drop_index("ix_label_decisions_spectrum_user")

    op.drop_table("label_decisions")
    op.drop_table("catalogues")
    op.drop_table("users")
    op.drop_table("spectra")
