"""The active-learning loop: labels and verdicts from the web database -> a fine-tuned model.

`learn` reads, through the web tool's own models and queries
(`spectraldl.web.store`), every spectrum people labelled (the consensus label:
more votes than any other, ties left out, undone labels gone) and every
vetted candidate (the consensus verdict: ``confirm`` = the class the model
predicted, ``reject`` = absorption, ``noise`` = noise). A spectrum both
labelled and vetted takes its label (the labeller saw the whole spectrum).
These rows are written as a dataset, published beside the new model
(``NEW_MODEL_DIR.labels.h5``) together with it, and the model is fine-tuned on them
(`spectraldl.ml.training.train` with ``init``: a share of every class held out,
the parent's training data replayed). Parent and child are scored on the
same held-out real rows; a child that is worse is not written unless forced.
The database's labels and verdicts are only read; a child that is written
scores every stored spectrum into a new catalogue there (the labelling queue's
"most uncertain first" follows it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import make_url

from spectraldl.io.dataset import Rows, append_rows, create_dataset
from spectraldl.io.labels import CLASSES, label_code
from spectraldl.jobs.files import process_alive
from spectraldl.ml.modelcard import CARD, TrainedModel, load_model
from spectraldl.ml.pretrained import resolve_model
from spectraldl.ml.training import (
    TrainConfig,
    TrainingError,
    TrainResult,
    publish_model_dir,
    recover_model_dir,
    replace_problem,
    train,
)
from spectraldl.web import store
from spectraldl.web.db import DatabaseError, open_existing, resolve_url
from spectraldl.web.importing import score_with_model
from spectraldl.web.models import Catalogue, Prediction, SpectrumRow

__all__ = ["LabelledSpectra", "LearnError", "LearnResult", "collect_labels", "learn"]

VERDICT_CLASS = {"reject": "absorption", "noise": "noise"}
"""Class a vetting verdict stands for (``confirm``: the class the model predicted)."""

WORSE_TOLERANCE = 0.0
"""A child whose accuracy on the held-out real rows is below its parent's by more than this
(or whose test accuracy, the forgetting check, drops by more than a point) is worse."""
FORGETTING_POINTS = 1.0


class LearnError(ValueError):
    """The loop cannot run or its result is refused: the message says why and what to do."""


@dataclass
class LabelledSpectra:
    """What the database holds for learning: rows, where each label came from, what was left."""

    rows: Rows
    source: list[str]
    skipped: Counter[str] = field(default_factory=Counter)
    conflicts: int = 0

    def counts(self) -> dict[str, dict[str, int]]:
        """Per source (``label``/``verdict``), rows per class."""
        out: dict[str, Counter[str]] = {}
        for origin, code in zip(self.source, self.rows.labels, strict=True):
            out.setdefault(origin, Counter())[CLASSES[int(code)]] += 1
        return {k: dict(v) for k, v in out.items()}


def _consensus_labels(session: Any, skipped: Counter[str]) -> dict[int, tuple[str, str]]:
    """Spectrum id -> (consensus label, ``label``) for every spectrum people labelled."""
    chosen: dict[int, tuple[str, str]] = {}
    for spectrum_id, votes in store.labels_by_spectrum(session).items():
        label = store.consensus(votes.values())
        if label is None:
            skipped["tied labels"] += 1
            continue
        chosen[spectrum_id] = (label, "label")
    return chosen


def _add_verdicts(session: Any, chosen: dict[int, tuple[str, str]], skipped: Counter[str]) -> int:
    """Add the consensus verdicts of spectra not labelled; how many a label overruled."""
    conflicts = 0
    for catalogue_id in session.scalars(select(Catalogue.id).order_by(Catalogue.id)):
        given = store.verdicts_by_prediction(session, catalogue_id=catalogue_id)
        if not given:
            continue
        predictions = session.execute(
            select(Prediction.id, Prediction.spectrum_id, Prediction.predicted_class).where(
                Prediction.id.in_(list(given))
            )
        )
        for prediction_id, spectrum_id, predicted in predictions:
            verdict = store.consensus(given[prediction_id].values())
            if verdict is None:
                skipped["tied verdicts"] += 1
                continue
            if spectrum_id is None:
                skipped["verdict without spectrum"] += 1
                continue
            label = predicted if verdict == "confirm" else VERDICT_CLASS[verdict]
            if spectrum_id in chosen:
                conflicts += chosen[spectrum_id][0] != label
                continue
            chosen[spectrum_id] = (label, "verdict")
    return conflicts


def _stored_origin(row: SpectrumRow) -> str:
    """``synthetic`` or ``real``: a simulated file's metadata says synthetic, whatever the row's
    column says (earlier imports stored such files as real)."""
    meta = row.meta if isinstance(row.meta, dict) else {}
    return "synthetic" if meta.get("simulated") else (row.origin or "real")


def _stored_rows(
    session: Any,
    chosen: dict[int, tuple[str, str]],
    model: TrainedModel,
    skipped: Counter[str],
) -> tuple[Rows, list[str]]:
    """The chosen spectra of the model's classes stored on its grid, as rows; each one's source."""
    grid = model.config
    columns: dict[str, list[Any]] = {
        k: [] for k in ("x", "id", "code", "archive", "origin", "snr", "object")
    }
    sources = []
    for row in session.scalars(
        select(SpectrumRow).where(SpectrumRow.id.in_(list(chosen))).order_by(SpectrumRow.id)
    ):
        label, origin = chosen[row.id]
        if label not in model.classes:
            skipped[f"class {label}"] += 1
            continue
        x = row.vector()
        on_grid = len(x) == grid.grid_n and np.allclose(
            (row.grid_start_aa, row.grid_stop_aa), (grid.grid_start_aa, grid.grid_stop_aa)
        )
        if not on_grid:
            skipped["grid"] += 1
            continue
        for key, value in (
            ("x", x),
            ("id", row.ident),
            ("code", label_code(label)),
            ("archive", row.archive),
            ("origin", _stored_origin(row)),
            ("snr", np.nan if row.snr is None else row.snr),
            ("object", row.object),
        ):
            columns[key].append(value)
        sources.append(origin)
    n = len(sources)
    rows = Rows(
        X=np.array(columns["x"], np.float32).reshape(n, grid.grid_n),
        ids=np.array(columns["id"], dtype=object),
        labels=np.array(columns["code"], np.int8),
        quality=np.zeros(n, np.int32),
        meta={
            "origin": np.array(columns["origin"], dtype=object),
            "archive": np.array(columns["archive"], dtype=object),
            "snr": np.array(columns["snr"], np.float32),
            "object": np.array(columns["object"], dtype=object),
        },
    )
    return rows, sources


def collect_labels(db: Any, model: TrainedModel) -> LabelledSpectra:
    """The consensus labels and vetted verdicts of the database ``db``, for ``model``.

    Spectra whose stored vector is not on the model's grid are left out
    (``skipped['grid']``), as are labels of classes the model does not have
    (``skipped['class <name>']``) and verdicts on candidates whose spectrum is
    not stored (``skipped['verdict without spectrum']``).
    """
    skipped: Counter[str] = Counter()
    with db.session() as session:
        chosen = _consensus_labels(session, skipped)
        conflicts = _add_verdicts(session, chosen, skipped)
        rows, sources = _stored_rows(session, chosen, model, skipped)
    return LabelledSpectra(rows=rows, source=sources, skipped=skipped, conflicts=conflicts)


@dataclass
class LearnResult:
    """What `learn` did: the data, the training run, the comparison and whether it was kept."""

    labelled: LabelledSpectra
    result: TrainResult
    comparison: dict[str, Any]
    worse: list[str]
    written: bool
    out_dir: Path
    labels_path: Path
    """The labels dataset beside ``out_dir``: written only with the model."""
    scored: int = 0
    """Stored spectra the new model scored into the database (its "most uncertain first" queue)."""


def _comparison(compared: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Parent vs child on held-out real and test rows (card's ``parent.compared``); why worse."""
    worse = []
    real, test = compared["real"], compared["test"]
    if real["n"] and real["accuracy"] < real["parent_accuracy"] - WORSE_TOLERANCE:
        worse.append(
            f"accuracy on the {real['n']} held-out real spectra fell from "
            f"{real['parent_accuracy']:.3f} to {real['accuracy']:.3f}"
        )
    if test["n"] and test["accuracy"] < test["parent_accuracy"] - FORGETTING_POINTS / 100:
        worse.append(
            f"accuracy on the parent's {test['n']} test spectra (what it knew) fell from "
            f"{test['parent_accuracy']:.3f} to {test['accuracy']:.3f}, more than "
            f"{FORGETTING_POINTS:g} point"
        )
    return compared, worse


def learn(
    db_url: str,
    model: str | Path,
    out_dir: str | Path,
    *,
    config: TrainConfig | None = None,
    replay: list[str | Path] | None = None,
    force: bool = False,
    overwrite: bool = False,
    log: Any = None,
) -> LearnResult:
    """Fine-tune ``model`` on the labels and verdicts of the database ``db_url``.

    Parameters
    ----------
    db_url
        The web tool's database (SQLAlchemy URL or SQLite path): its labels and verdicts
        are read; a new model that is written scores the stored spectra into a new
        catalogue there.
    model
        The model now in use: a directory or a shipped model's name.
    out_dir
        The new model directory. It may be ``model`` itself (replaced only
        when the new one is not worse, or with ``force``); another existing
        directory is replaced only with ``overwrite``. First, the leftovers of
        runs killed while writing it are cleaned up (`recover_model_dir`, said
        in ``log``): a model such a run had moved aside (``model`` itself when
        they are the same) is put back, its unfinished folders removed.
    config
        Training choices; the network is the parent's. Default: 20 epochs at
        most, patience 4, step 3e-4 (fine-tuning starts near a minimum).
    replay
        The parent's training data when not where its card says.
    force
        Write the new model even when it is worse than the parent.
    overwrite
        Replace an existing ``out_dir`` (other than ``model``).
    log
        Called with one line of text per stage.

    Returns
    -------
    LearnResult
        Raises `LearnError` when there is nothing to learn from or the
        result is refused.
    """
    say = log or (lambda _line: None)
    try:
        finish_labels_publish(Path(out_dir), say)
        recover_model_dir(Path(out_dir), say)
    except TrainingError as exc:
        raise LearnError(str(exc)) from None
    parent_dir = resolve_model(model)
    parent = load_model(parent_dir, device="cpu")
    out_dir = Path(out_dir)
    in_place = out_dir.exists() and out_dir.resolve() == parent_dir.resolve()
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (in_place or overwrite):
            raise LearnError(f"{out_dir}: already exists (--overwrite replaces it)")
        problem = replace_problem(out_dir, [*_database_file(db_url), *(replay or ())])
        if problem:
            raise LearnError(problem)
    labelled = _read_labelled(db_url, parent, say)
    config = config or TrainConfig(epochs=20, patience=4, learning_rate=3e-4)
    config = replace(config, model=parent.architecture.name)
    work = out_dir.with_name(f".{out_dir.name}.learn-{os.getpid()}")  # recover_model_dir's
    try:
        return _train_and_publish(
            _Run(db_url, parent_dir, out_dir, work, config, replay, say), parent, labelled, force
        )
    finally:  # refused, failed or stopped: nothing of the run stays, the labels neither
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class _Run:
    """Where one `learn` run reads and writes, and how it trains."""

    db_url: str
    parent_dir: Path
    out_dir: Path
    work: Path
    config: TrainConfig
    replay: list[str | Path] | None
    say: Callable[[str], None]

    @property
    def labels_path(self) -> Path:
        """Where the labels dataset is published, beside the model."""
        return labels_beside(self.out_dir)


def labels_beside(model_dir: Path) -> Path:
    """Where `learn` publishes the labels dataset of the model ``model_dir``: beside it."""
    return model_dir.with_name(model_dir.name + ".labels.h5")


def _train_and_publish(
    run: _Run, parent: TrainedModel, labelled: LabelledSpectra, force: bool
) -> LearnResult:
    """Train in ``run.work`` and publish model and labels together, unless worse.

    The labels dataset is written inside the work folder and renamed beside the
    model with it (`publish_model_dir`), so a refused or stopped run never changes
    the labels file an existing model's card names.
    """
    run.work.mkdir(parents=True)
    staged = _write_labels(run.work / run.labels_path.name, parent, labelled, run.db_url)
    candidate = run.work / "model"
    try:
        result = train(
            [staged],
            candidate,
            config=run.config,
            log=lambda line: None if line.startswith(f"wrote {candidate} ") else run.say(line),
            init=run.parent_dir,
            replay=run.replay,
            card_extra={
                "learning": _learning_section(run.db_url, run.labels_path, staged, labelled)
            },
            published_as={staged: run.labels_path, candidate: run.out_dir},
        )
    except TrainingError as exc:
        raise LearnError(str(exc)) from None
    comparison, worse = _comparison((result.card.parent or {})["compared"])
    keep = force or not worse
    scored = 0
    if keep:
        publish_model_dir(candidate, run.out_dir, also=[(staged, run.labels_path)])
        result.model_dir = run.out_dir
        result.model.path = str(run.out_dir)
        run.say(f"wrote {run.out_dir} (model {result.model.model_id}) and {run.labels_path}")
        scored = _score_published(run.db_url, run.out_dir)
        run.say(f"the new model scored {scored} stored spectra: the uncertainty queue follows it")
    return LearnResult(
        scored=scored,
        labelled=labelled,
        result=result,
        comparison=comparison,
        worse=worse,
        written=keep,
        out_dir=run.out_dir,
        labels_path=run.labels_path,
    )


def _database_file(db_url: str) -> list[Path]:
    """The SQLite file of ``db_url`` (none for a server database)."""
    url = make_url(resolve_url(db_url))
    return [Path(url.database)] if url.get_backend_name() == "sqlite" and url.database else []


def _read_labelled(
    db_url: str, parent: TrainedModel, say: Callable[[str], None]
) -> LabelledSpectra:
    """The database's labelled spectra for ``parent``; `LearnError` when fewer than two."""
    db = _open_existing(db_url)
    try:
        labelled = collect_labels(db, parent)
    finally:
        db.dispose()
    say(
        f"{len(labelled.rows)} labelled spectra from the database: "
        + "; ".join(f"{k}s {v}" for k, v in labelled.counts().items())
        + (f"; left out: {dict(labelled.skipped)}" if labelled.skipped else "")
        + (f"; {labelled.conflicts} verdicts overruled by labels" if labelled.conflicts else "")
    )
    if len(labelled.rows) < 2:
        raise LearnError(
            f"{len(labelled.rows)} usable labelled spectra in the database: label more "
            "(at least two of a class, so that one stays out for evaluation)"
        )
    return labelled


def _write_labels(path: Path, parent: TrainedModel, labelled: LabelledSpectra, db_url: str) -> Path:
    """The labelled spectra as a dataset at ``path`` (replaced), preprocessed as the parent's."""
    path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    create_dataset(path, config=parent.config, attrs={"exported_from": _safe_url(db_url)})
    append_rows(path, labelled.rows)
    return path


def _learning_section(
    db_url: str, labels_path: Path, staged: Path, labelled: LabelledSpectra
) -> dict[str, Any]:
    """The card's ``learning``: where the labels came from (``staged``, published as
    ``labels_path``, whose bytes the digest names) and what was left out."""
    return {
        "database": _safe_url(db_url),
        "labels_dataset": str(labels_path.resolve()),
        "labels_sha256": _file_sha256(staged),
        "rows": labelled.counts(),
        "left_out": dict(labelled.skipped),
        "verdicts_overruled_by_labels": labelled.conflicts,
        "verdict_classes": {"confirm": "the predicted class", **VERDICT_CLASS},
    }


def _open_existing(db_url: str) -> Any:
    """Open the web database without creating or migrating anything; `LearnError` if absent."""
    try:
        return open_existing(db_url)
    except DatabaseError as exc:
        raise LearnError(str(exc)) from None


def _score_published(db_url: str, model_dir: Path) -> int:
    """`_rescore` with the model already published: Ctrl-C or SIGTERM now says so (running
    the command again would fine-tune the new model a second time)."""
    try:
        return _rescore(db_url, model_dir)
    except KeyboardInterrupt as stop:
        stop.args = (
            f"the new model is written to {model_dir}; only its scoring of the stored spectra "
            f"stopped: run spectraldl import --model {model_dir} --db ... to score them",
        )
        raise


def _rescore(db_url: str, model_dir: Path) -> int:
    """Score every stored spectrum with the new model, as a catalogue of the database.

    The labelling queue "most uncertain first" and the vetting pages then use
    the new model's probabilities: the next round of labels goes where it is
    least sure.
    """
    db = _open_existing(db_url)
    try:
        summary = score_with_model(db, model_dir)
    finally:
        db.dispose()
    return sum(rows for _, _, rows in summary.catalogues)


def _safe_url(url: str) -> str:
    """The database URL without its password (for the card)."""
    try:
        return make_url(resolve_url(url)).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as given, never with a secret in it
        return "(unparsable URL)"


def _file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hexadecimal."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def finish_labels_publish(out_dir: Path, say: Callable[[str], None]) -> None:
    """Finish the publishing of a `learn` run killed (kill -9) between its model's rename
    and its labels dataset's: move the labels its published model's card names in.

    Such a run leaves ``out_dir`` holding its new model, and the labels dataset that
    model was trained on in its dead ``.NAME.learn-PID`` beside it, where
    `recover_model_dir` would delete it. It is moved to ``NAME.labels.h5`` only when the
    model's card names that path and the file's SHA-256 (``learning.labels_sha256``).
    """
    labels_path = labels_beside(out_dir)
    try:
        learning = json.loads((out_dir / CARD).read_text()).get("learning") or {}
    except (OSError, ValueError, AttributeError):
        return
    if learning.get("labels_dataset") != str(labels_path.resolve()):
        return
    wanted = learning.get("labels_sha256")
    pattern = re.compile(re.escape(f".{out_dir.name}.learn-") + "([0-9]+)")
    for work in out_dir.parent.glob(f".{out_dir.name}.learn-*"):
        match = pattern.fullmatch(work.name)
        staged = work / labels_path.name
        if not match or int(match[1]) == os.getpid() or process_alive(int(match[1])):
            continue
        if staged.is_file() and _file_sha256(staged) == wanted:
            if labels_path.is_file() and _file_sha256(labels_path) == wanted:
                return
            try:
                os.replace(staged, labels_path)
            except OSError as exc:
                raise TrainingError(f"{labels_path}: cannot move it in ({exc.strerror})") from None
            say(
                f"moved {labels_path.name} in from {work.name}: a run killed after publishing "
                f"{out_dir} had not moved in the labels its model was trained on"
            )
            return
