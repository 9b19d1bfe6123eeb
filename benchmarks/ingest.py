"""Ingest speed: files/s of the thesis' way, plain astropy and `spectraldl ingest`.

All readers run on the same tree of real LAMOST files (copies of the bundled
ones with distinct ids, see `spectraldl.io.bundled.replicate_real_tree`), plain
and gzipped, in this one run. The baseline is the thesis' way: astropy opens
each file, an astropy WCS gives the wavelengths, np.interp regrids, one core.

    .venv/bin/python benchmarks/ingest.py [--files 5000] [--json out.json]

Every timing of the baselines is the best of ``--repeat`` runs. `spectraldl
ingest` runs as the command a user types, a new process each time (imports
and worker start-up included), in ``--repeat`` rounds that alternate 1 and 2
workers on the whole tree and on its first 1 000 files, so a slow spell of
this noisy machine falls on both sides of a ratio. A whole-command row is the
best of its rounds. "start-up left out" rows subtract, round by round, the
command on the first 1 000 files from the command on the whole tree: the rate
a release of millions of files sees (both sides start alike, so the start-up
cancels out); they give the median over the rounds, and the second worker's
gain is the median of the rounds' own ratios (all listed in ``round_ratios``).
A second table inflates the gzipped sample in memory with zlib (the baseline),
ISA-L's streaming decompressor and libdeflate in one call (what the reader uses).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from _common import print_table, write_json


def thesis_way(paths: list[Path]) -> int:
    """astropy + WCS + np.interp + per-spectrum scaling, as the thesis' notebooks did."""
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    grid = np.linspace(6519, 6732, 140)
    done = 0
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                with fits.open(path) as hdul:
                    header = hdul[0].header
                    flux = hdul[0].data[0]
                    wcs = WCS(header, naxis=1)
            pixels = np.arange(flux.size)
            wave = 10 ** wcs.wcs_pix2world(pixels, 0)[0]
            x = np.interp(grid, wave, flux)
            with np.errstate(invalid="ignore", divide="ignore"):  # a flat spectrum: not finite
                x = (x - x.mean()) / x.std()
            done += bool(np.isfinite(x).all())
        except (OSError, ValueError):
            continue
    return done


def plain_astropy(paths: list[Path]) -> int:
    """astropy getdata + header wavelength formula + np.interp (no WCS)."""
    from astropy.io import fits

    grid = np.linspace(6519, 6732, 140)
    done = 0
    for path in paths:
        try:
            data, header = fits.getdata(path, header=True)
        except (OSError, ValueError):
            continue
        wave = 10 ** (header["COEFF0"] + header["COEFF1"] * np.arange(data.shape[1]))
        x = np.interp(grid, wave, data[0])
        std = x.std()
        done += bool(std > 0)
    return done


def spectraldl_ingest(tree: Path, out: Path, workers: int) -> tuple[float, int]:
    """Seconds of one run of the whole `spectraldl ingest` command, writing a new dataset,
    and the spectra it added."""
    from spectraldl.io.dataset import dataset_info

    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "spectraldl.cli", "ingest", str(tree), "-o", str(out)]
    start = time.perf_counter()
    subprocess.run([*command, "-j", str(workers)], check=True, capture_output=True)
    return time.perf_counter() - start, dataset_info(out).n_rows


def command_rows(tree: Path, files: int, out: Path, kind: str, rounds: int) -> list[dict]:
    """The whole command with 1 and 2 workers (best of ``rounds``), then the same with the
    fixed start-up left out (medians over the rounds, see the module's docstring)."""
    first = sorted(p for p in tree.iterdir() if p.is_dir())[0]
    small = sum(1 for _ in first.rglob("*.fits*"))
    whole: dict[int, list[float]] = {1: [], 2: []}
    steady: dict[int, list[float]] = {1: [], 2: []}
    added = 0
    for _ in range(rounds):
        for workers in (1, 2):
            seconds, added = spectraldl_ingest(tree, out.with_name(f"{out.name}.h5"), workers)
            start_up, _ = spectraldl_ingest(first, out.with_name(f"{out.name}-first.h5"), workers)
            whole[workers].append(seconds)
            steady[workers].append(seconds - start_up)
    paired = [one / two for one, two in zip(steady[1], steady[2], strict=True)]
    rows = []
    for workers in (1, 2):
        name = f"spectraldl ingest, {workers} worker{'s' * (workers > 1)}"
        seconds = min(whole[workers])
        rows.append(
            {
                "files": kind,
                "method": name,
                "n_files": files,
                "spectra_added": added,
                "seconds": seconds,
                "files_per_s": files / seconds,
                "vs_1_worker": min(whole[1]) / seconds,
            }
        )
    for workers in (1, 2):
        seconds = float(np.median(steady[workers]))
        rows.append(
            {
                "files": kind,
                "method": f"spectraldl ingest, {workers} worker{'s' * (workers > 1)}, "
                "start-up left out",
                "n_files": files - small,
                "seconds": seconds,
                "files_per_s": (files - small) / seconds,
                "vs_1_worker": float(np.median(paired)) if workers == 2 else 1.0,
                "round_ratios": paired if workers == 2 else [],
            }
        )
    return rows


def gunzip_rows(paths: list[Path], repeat: int) -> list[dict[str, Any]]:
    """The gzipped files inflated in memory, one core: zlib (the baseline), ISA-L's streaming
    decompressor (what the reader used until 2026-12-06) and libdeflate in one call (its
    `_inflate_whole`, for single-member files); MB/s of inflated bytes, best of ``repeat``."""
    import zlib

    import deflate
    from isal import isal_zlib

    packed = [path.read_bytes() for path in paths]
    inflated = sum(len(zlib.decompress(raw, wbits=31)) for raw in packed)
    methods: list[tuple[str, Callable[[bytes], Any]]] = [
        ("gunzip: zlib streaming (baseline)", lambda raw: zlib.decompressobj(31).decompress(raw)),
        ("gunzip: ISA-L streaming", lambda raw: isal_zlib.decompressobj(31).decompress(raw)),
        ("gunzip: libdeflate, one call", lambda raw: deflate.gzip_decompress(raw)),
    ]
    rows = []
    for name, inflate in methods:
        seconds = timed(lambda inflate=inflate: [inflate(raw) for raw in packed], repeat)
        rows.append(
            {"files": "gzip", "method": name, "n_files": len(packed), "seconds": seconds,
             "files_per_s": len(packed) / seconds, "mb_per_s": inflated / seconds / 1e6}
        )  # fmt: skip
    for row in rows:
        row["vs_zlib"] = row["files_per_s"] / rows[0]["files_per_s"]
    return rows


def timed(run: Callable[[], Any], repeat: int) -> float:
    """Seconds of the best of ``repeat`` calls of ``run``."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=5000, help="files in the tree")
    parser.add_argument(
        "--thesis-files",
        type=int,
        default=1000,
        help="files timed for the slow baselines (rates are per file)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each baseline (the best counts) and rounds of the commands",
    )
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()

    from spectraldl.io.bundled import replicate_real_tree

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for compressed in (False, True):
            kind = "gzip" if compressed else "plain"
            tree = Path(tmp) / kind
            paths = replicate_real_tree(tree, args.files, compress=compressed)
            sample = paths[: args.thesis_files]
            baselines = [
                ("thesis way (astropy+WCS+interp, 1 core)", partial(thesis_way, sample)),
                ("plain astropy (1 core)", partial(plain_astropy, sample)),
            ]
            results = [
                {
                    "files": kind,
                    "method": name,
                    "n_files": len(sample),
                    "seconds": timed(run, args.repeat),
                }
                for name, run in baselines
            ]
            for r in results:
                r["files_per_s"] = r["n_files"] / r["seconds"]
            results += command_rows(tree, len(paths), Path(tmp) / kind, kind, args.repeat)
            base = results[0]["files_per_s"]
            one = results[2]["files_per_s"]
            for r in results:
                r["vs_thesis"] = r["files_per_s"] / base
                r.setdefault("vs_1_worker", r["files_per_s"] / one)
            rows.extend(results)
            if compressed:
                gunzip = gunzip_rows(sample, args.repeat)
    print_table(
        f"Ingest speed, tree of {args.files} real LAMOST files (bundled copies)",
        rows,
        ["files", "method", "n_files", "seconds", "files_per_s", "vs_thesis", "vs_1_worker"],
    )
    print_table(
        "Inflating the gzipped files in memory, one core (ratio: to zlib)",
        gunzip,
        ["method", "n_files", "seconds", "mb_per_s", "vs_zlib"],
    )
    write_json(args.json, "ingest", rows + gunzip)


if __name__ == "__main__":
    main()
