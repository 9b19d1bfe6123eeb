"""The project's checks of a model on the bundled real spectra.

Two questions a model must answer well before anyone trusts its catalogue:
are the real labelled spectra (Ondřejov with the thesis' labels, their LAMOST
counterparts) given their labels, and do the ordinary real LAMOST stars (the
``dev`` and ``holdout`` files, none an emission-line star) stay out of the
candidate catalogue? The shipped models record the answers in ``checks.json``.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from spectraldl.catalogue.selection import Selection
from spectraldl.classify.run import classify
from spectraldl.io.bundled import bundled_files
from spectraldl.io.predictions import read_predictions
from spectraldl.jobs.backends import open_backend

ORDINARY_ROLES = ("dev", "holdout")
"""Roles of the bundled LAMOST files that are ordinary stars, never candidates."""


def real_spectra_checks(model_dir: str | Path, *, workers: int = 1) -> dict[str, Any]:
    """Classify every bundled real spectrum with the model; the two checks' counts.

    Returns ``{"real_labelled": {"n", "right", "spectra": [...]}, "ordinary_lamost":
    {"n", "candidates", "unreadable", "classes"}}``; ``spectra`` lists each
    labelled spectrum's id, archive, label, predicted class and its
    probability; ``classes`` counts the ordinary stars' predicted classes.
    """
    files = bundled_files()
    with tempfile.TemporaryDirectory() as tmp, open_backend("local", workers=workers) as backend:
        out = Path(tmp) / "real.parquet"
        classify(model_dir, [f.path for f in files], out, device="cpu", backend=backend)
        table = read_predictions(out)
    by_source = {str(Path(s).resolve()): i for i, s in enumerate(table["source"])}
    chosen = Selection().mask(table)
    labelled: list[dict[str, Any]] = []
    ordinary = candidates = unreadable = 0
    classes: Counter[str] = Counter()
    for item in files:
        row = by_source.get(str(item.path.resolve()))
        if item.label:
            if row is None:
                labelled.append({"path": item.path.name, "label": item.label, "predicted": None})
                continue
            predicted = str(table["predicted_class"].iloc[row])
            p = float(np.max(table[[c for c in table.columns if c.startswith("p_")]].iloc[row]))
            labelled.append(
                {
                    "id": str(table["id"].iloc[row]),
                    "archive": item.archive,
                    "label": item.label,
                    "predicted": predicted,
                    "p": round(p, 4),
                }
            )
        elif item.archive == "lamost" and item.role in ORDINARY_ROLES:
            ordinary += 1
            if row is None:
                unreadable += 1
            else:
                classes[str(table["predicted_class"].iloc[row])] += 1
                candidates += int(chosen[row])
    right = sum(1 for s in labelled if s["predicted"] == s["label"])
    return {
        "real_labelled": {"n": len(labelled), "right": right, "spectra": labelled},
        "ordinary_lamost": {
            "n": ordinary,
            "candidates": candidates,
            "unreadable": unreadable,
            "classes": dict(classes.most_common()),
        },
    }
