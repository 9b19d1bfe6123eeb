"""The web tool's database tables (SQLAlchemy 2 ORM), the same on SQLite and PostgreSQL.

Decisions are append-only: a label or vetting verdict is a new row with its
user and time, never an update, so the history of every spectrum is kept and
the current label is derived (the latest row per user; an undo is a new row
that restores the state before the undone one). Spectra are stored whole
(wavelength, flux and the 140-point vector) so the app never needs the
original files again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A UTC time stored without zone (portable), returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    """The current time in UTC (timezone-aware)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so migrations name constraints stably."""

    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    """A person who labels or vets; admins also manage users."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginSession(Base):
    """A login: the cookie holds a random token, the table only its SHA-256 and the CSRF token."""

    __tablename__ = "sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SpectrumRow(Base):
    """One spectrum: identity and metadata, the arrays, and the network's input vector.

    ``wave``/``flux`` are little-endian float64/float32 bytes (NULL for spectra
    imported from a dataset, which keeps only ``x``); ``x`` is the float32
    preprocessed vector on ``grid_start_aa``-``grid_stop_aa`` (vacuum Å).
    """

    __tablename__ = "spectra"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ident: Mapped[str] = mapped_column(String(512), unique=True)
    archive: Mapped[str] = mapped_column(String(32), default="")
    form: Mapped[str] = mapped_column(String(32), default="")
    object: Mapped[str] = mapped_column(String(256), default="")
    ra: Mapped[float | None] = mapped_column(Float, nullable=True)
    dec: Mapped[float | None] = mapped_column(Float, nullable=True)
    mjd: Mapped[float | None] = mapped_column(Float, nullable=True)
    date_obs: Mapped[str] = mapped_column(String(64), default="")
    snr: Mapped[float | None] = mapped_column(Float, nullable=True)
    source: Mapped[str] = mapped_column(String(1024), default="")
    origin: Mapped[str] = mapped_column(String(16), default="real")
    medium: Mapped[str | None] = mapped_column(String(8), nullable=True)
    flux_unit: Mapped[str] = mapped_column(String(32), default="")
    quality: Mapped[int] = mapped_column(Integer, default=0)
    reference_label: Mapped[str | None] = mapped_column(String(16), nullable=True)
    wave: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    flux: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    x: Mapped[bytes] = mapped_column(LargeBinary)
    grid_start_aa: Mapped[float] = mapped_column(Float)
    grid_stop_aa: Mapped[float] = mapped_column(Float)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    imported_from: Mapped[str] = mapped_column(String(1024), default="")
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def has_flux(self) -> bool:
        """True when the whole spectrum is stored (not only the 140-point vector)."""
        return self.wave is not None and self.flux is not None

    def wave_aa(self) -> np.ndarray | None:
        """Wavelengths (Å, in ``medium``) as float64, or None for vector-only spectra."""
        return None if self.wave is None else np.frombuffer(self.wave, dtype="<f8")

    def flux_values(self) -> np.ndarray | None:
        """Flux as float32, or None for vector-only spectra."""
        return None if self.flux is None else np.frombuffer(self.flux, dtype="<f4")

    def vector(self) -> np.ndarray:
        """The preprocessed vector (float32) the network sees."""
        return np.frombuffer(self.x, dtype="<f4")

    def grid_aa(self) -> np.ndarray:
        """The vector's grid (vacuum Å)."""
        return np.linspace(self.grid_start_aa, self.grid_stop_aa, len(self.x) // 4)


class LabelDecision(Base):
    """One labelling decision: never updated; ``label`` NULL means "no label" (an undo)."""

    __tablename__ = "label_decisions"
    __table_args__ = (
        Index("ix_label_decisions_spectrum_user", "spectrum_id", "user_id", "id"),
        Index("uq_label_decisions_undo_of", "undo_of", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spectrum_id: Mapped[int] = mapped_column(ForeignKey("spectra.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    label: Mapped[str | None] = mapped_column(String(16), nullable=True)
    undo_of: Mapped[int | None] = mapped_column(ForeignKey("label_decisions.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Catalogue(Base):
    """A predictions file or candidate catalogue loaded for vetting.

    ``status`` is ``importing`` while its rows are being stored (it cannot be
    vetted yet) and ``ready`` once they all are.
    """

    __tablename__ = "catalogues"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    source: Mapped[str] = mapped_column(String(1024), default="")
    classes: Mapped[list[str]] = mapped_column(JSON, default=list)
    columns: Mapped[list[str]] = mapped_column(JSON, default=list)
    model_id: Mapped[str] = mapped_column(String(128), default="")
    n_rows: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="ready", server_default="ready")
    similarity_spectra: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """Rows with a stored spectrum when the similarity order was computed (None: never);
    the order is recomputed when the count differs (`spectraldl.web.similarity`)."""


class ImportJob(Base):
    """A catalogue upload being imported in the background: its state and progress.

    ``status``: ``queued``, ``running``, ``done`` or ``failed`` (with ``error``).
    """

    __tablename__ = "import_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    rows_total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(String(2000), default="")
    catalogue_id: Mapped[int | None] = mapped_column(
        ForeignKey("catalogues.id", ondelete="SET NULL"), nullable=True
    )
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Prediction(Base):
    """One row of a catalogue: the model's class and probabilities for one spectrum.

    ``entropy`` (normalised to 0-1) and ``margin`` (top two probabilities'
    difference) rank spectra for active learning; ``row`` keeps every column of
    the file so the vetted catalogue can be written back whole. ``similarity_rank``
    is the row's place in the grid view's order of similar spectra (None until it is
    computed; `spectraldl.web.similarity`), indexed with the class so that a page of the
    grid reads the index only.
    """

    __tablename__ = "predictions"
    __table_args__ = (
        Index(
            "ix_predictions_catalogue_similarity",
            "catalogue_id",
            "similarity_rank",
            "predicted_class",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    catalogue_id: Mapped[int] = mapped_column(
        ForeignKey("catalogues.id", ondelete="CASCADE"), index=True
    )
    row_index: Mapped[int] = mapped_column(Integer)
    ident: Mapped[str] = mapped_column(String(512), index=True)
    spectrum_id: Mapped[int | None] = mapped_column(
        ForeignKey("spectra.id", ondelete="SET NULL"), nullable=True, index=True
    )
    object: Mapped[str] = mapped_column(String(256), default="")
    predicted_class: Mapped[str] = mapped_column(String(16), default="")
    probability: Mapped[float | None] = mapped_column(Float, nullable=True)
    novelty: Mapped[float | None] = mapped_column(Float, nullable=True)
    entropy: Mapped[float | None] = mapped_column(Float, nullable=True)
    margin: Mapped[float | None] = mapped_column(Float, nullable=True)
    quality: Mapped[int] = mapped_column(Integer, default=0)
    quality_flags: Mapped[str] = mapped_column(String(256), default="")
    probs: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    row: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    similarity_rank: Mapped[int | None] = mapped_column(Integer, nullable=True)


class VetDecision(Base):
    """One vetting verdict on a prediction (confirm, reject, noise; NULL after an undo)."""

    __tablename__ = "vet_decisions"
    __table_args__ = (
        Index("ix_vet_decisions_prediction_user", "prediction_id", "user_id", "id"),
        Index("uq_vet_decisions_undo_of", "undo_of", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prediction_id: Mapped[int] = mapped_column(ForeignKey("predictions.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    verdict: Mapped[str | None] = mapped_column(String(16), nullable=True)
    undo_of: Mapped[int | None] = mapped_column(ForeignKey("vet_decisions.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


VERDICTS: tuple[str, ...] = ("confirm", "reject", "noise")
"""Vetting verdicts, in the order of their keys on the vetting page."""


class Note(Base):
    """A person's free-text note and flags on one spectrum or candidate, by its ``ident``
    (so candidates without a stored spectrum get notes too): one row per person and
    ident, edited in place. ``flags`` is stored as ``|a|b|`` so that a flag is found
    with one portable LIKE."""

    __tablename__ = "notes"
    __table_args__ = (Index("uq_notes_ident_user", "ident", "user_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ident: Mapped[str] = mapped_column(String(512))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    text: Mapped[str] = mapped_column(String(4000), default="")
    flags: Mapped[str] = mapped_column(String(600), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


NOTE_FLAGS: dict[str, str] = {
    "nebular": "nebular (or interstellar) emission contaminates the line",
    "binary": "a binary: double lines or a composite spectrum",
    "bad-sky": "bad sky subtraction (sky lines, residuals)",
    "artefact": "an instrumental artefact or cosmic ray near H-alpha",
    "variable": "a known or suspected variable",
    "follow-up": "worth a follow-up observation",
}
"""The named flags offered on every page; any other flag (a-z, 0-9, '-') may be added."""
