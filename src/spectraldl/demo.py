"""The demo: the whole method end to end on bundled data, into one run directory.

Each step writes its outputs under the run directory and is skipped when a
later run finds them complete, so an interrupted demo resumes. The layout is
the contract of docs/CONVENTIONS.md ("Run directory").
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spectraldl import __version__
from spectraldl.bundled import bundled_files, real_dir, real_labels_csv
from spectraldl.ingest import ingest


@dataclass
class DemoRun:
    """Where the demo writes and what it has done."""

    out: Path
    quick: bool = False
    seed: int = 0
    workers: int = 2
    log: Callable[[str], None] = print
    steps: list[dict[str, Any]] = field(default_factory=list)

    def step(self, name: str, done: Path, action: Callable[[], str]) -> None:
        """Run ``action`` unless ``done`` exists; record the step and its one-line summary."""
        start = time.perf_counter()
        if done.exists():
            summary = f"already done ({done.relative_to(self.out)})"
        else:
            summary = action()
        seconds = time.perf_counter() - start
        self.steps.append({"step": name, "summary": summary, "seconds": round(seconds, 2)})
        self.log(f"[{name}] {summary} ({seconds:.1f} s)")


def _copy_real_lamost(archive: Path) -> str:
    target = archive / "real"
    tmp = archive / "real.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    files = bundled_files(archive="lamost")
    for item in files:
        relative = item.path.relative_to(real_dir() / "lamost")
        destination = tmp / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.path, destination)
    tmp.rename(target)
    return f"{len(files)} real LAMOST files copied into {target}"


def run_demo(
    out: str | Path,
    *,
    quick: bool = False,
    seed: int = 0,
    workers: int = 2,
    log: Callable[[str], None] = print,
) -> DemoRun:
    """Run the demo into ``out`` and return what it did.

    Parameters
    ----------
    out
        Run directory (created; an existing one is resumed).
    quick
        Small sizes, for the test suite.
    seed
        Seed of every random step.
    workers
        Worker processes for the parallel steps.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run = DemoRun(out=out, quick=quick, seed=seed, workers=workers, log=log)
    archive = out / "archive"
    archive.mkdir(exist_ok=True)

    run.step("archive", archive / "real", lambda: _copy_real_lamost(archive))

    def ingest_training() -> str:
        files = [f.path for f in bundled_files() if f.label]
        summary = ingest(
            files, out / "training.h5", labels_csv=real_labels_csv(), workers=workers, origin="real"
        )
        return summary.line()

    run.step("training set", out / "training.h5", ingest_training)

    def ingest_archive() -> str:
        return ingest([archive], out / "archive.h5", workers=workers).line()

    run.step("ingest archive", out / "archive.h5", ingest_archive)
    _write_run_json(run)
    return run


def _write_run_json(run: DemoRun) -> None:
    record = {
        "command": " ".join(sys.argv),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "spectraldl_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "seed": run.seed,
        "quick": run.quick,
        "workers": run.workers,
        "steps": run.steps,
    }
    (run.out / "run.json").write_text(json.dumps(record, indent=1))
