"""Benchmark of `spectraldl.prep.smoothing` against `scipy.ndimage`, which it replaced.

The two give the same bits (tests/test_smoothing.py). What changed is time:

* start-up: for each of ``simulate``, ``ingest`` and ``classify``, a new process
  importing the modules its workers run (what their forkserver imports before
  the first file), with scipy.ndimage imported first (before: the stages
  imported it) and without (now); the median of ``--starts`` fresh processes
  each, alternated;
* per call: `gaussian_filter1d` (a Gaussian `correlate1d`) on the sizes the stages smooth
  (the LAMOST simulation's template window and H-alpha line, the Ondřejov blur
  of preprocessing, a chunk of line windows measured at once), scipy's against ours.

Run: ``.venv/bin/python benchmarks/smoothing.py [--starts 15] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import print_table, write_json
from scipy import ndimage

from spectraldl.cli import classify, ingest, simulate
from spectraldl.prep import smoothing

COMMANDS = {"simulate": simulate, "ingest": ingest, "classify": classify}
"""The commands whose workers smooth; each names the modules its workers' server imports."""

CALLS = (
    ("LAMOST simulation: template window", (723,), 1.99, "nearest"),
    ("LAMOST simulation: H-alpha line", (1201,), 19.0, "constant"),
    ("Ondřejov blur (preprocessing)", (1757,), 7.0, "nearest"),
    ("line windows of a chunk, measured at once", (512, 50), 1.5, "nearest"),
)
"""(case, shape, sigma in pixels, mode): the sizes the stages smooth (the last along axis 1)."""


def import_seconds(modules: list[str]) -> float:
    """Wall-clock seconds a new Python process takes to import ``modules`` and exit."""
    script = f"import importlib\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
    started = timeit.default_timer()
    subprocess.run([sys.executable, "-c", script], check=True)
    return timeit.default_timer() - started


def start_rows(starts: int) -> list[dict[str, Any]]:
    """Each command's workers' imports with scipy.ndimage (baseline) and without, ``starts``
    fresh processes each, alternated."""
    rows = []
    for command, cli in COMMANDS.items():
        modules = list(cli.WORKER_MODULES)
        cases = {"with scipy.ndimage (before)": ["scipy.ndimage", *modules], "now": modules}
        times: dict[str, list[float]] = {case: [] for case in cases}
        for _ in range(starts):
            for case, imported in cases.items():
                times[case].append(import_seconds(imported))
        base = statistics.median(times["with scipy.ndimage (before)"])
        rows += [
            {
                "case": f"start-up of {command}'s workers' server: {case}",
                "ms": statistics.median(values) * 1e3,
                "ms_min": min(values) * 1e3,
                "ratio_vs_baseline": base / statistics.median(values),
            }
            for case, values in times.items()
        ]
    return rows


def per_call_us(smooth: Callable[..., Any], values: np.ndarray, sigma: float, mode: str) -> float:
    """Best microseconds per ``smooth(values, sigma)`` along the last axis."""

    def call() -> Any:
        return smooth(values, sigma, axis=values.ndim - 1, mode=mode)

    number = max(1, int(2e5 // values.size))
    return min(timeit.repeat(call, number=number, repeat=7)) / number * 1e6


def call_rows() -> list[dict[str, Any]]:
    """Microseconds per call, scipy's (baseline) and ours, for each of `CALLS`."""
    rng = np.random.default_rng(0)
    rows = []
    for case, shape, sigma, mode in CALLS:
        values = rng.normal(size=shape)
        theirs = per_call_us(ndimage.gaussian_filter1d, values, sigma, mode)
        ours = per_call_us(smoothing.gaussian_filter1d, values, sigma, mode)
        radius = int(4.0 * sigma + 0.5)
        for name, us in (("scipy.ndimage (baseline)", theirs), ("prep.smoothing", ours)):
            rows.append(
                {
                    "case": f"{case}: {'x'.join(map(str, shape))} px, radius {radius}, {name}",
                    "us_per_call": us,
                    "ratio_vs_baseline": theirs / us,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=15, help="fresh processes per case")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    starts, calls = start_rows(args.starts), call_rows()
    print_table(
        "# start-up of the workers' server (fresh process)",
        starts,
        ["case", "ms", "ms_min", "ratio_vs_baseline"],
    )
    print_table("# per call", calls, ["case", "us_per_call", "ratio_vs_baseline"])
    write_json(args.json, "smoothing", starts + calls, starts=args.starts)


if __name__ == "__main__":
    main()
