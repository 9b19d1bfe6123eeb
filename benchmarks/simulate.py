"""How fast does `spectraldl simulate` write archives? Files per second, and against astropy.

Rows: LAMOST DR1 (gzipped) and Ondřejov SSAP archives written by
`simulate_archive` with 1 and 2 worker processes; the LAMOST archive by the
whole command a user types (``spectraldl simulate``, a new process: imports
and worker start-up included) with 1 and 2 workers; and the write step alone,
composing FITS bytes ourselves (`spectraldl.simulate.fitsbytes`) against the
baseline of astropy's writer (``HDUList.writeto``) for the same spectra,
measured in the same run. The tests show astropy reads our bytes identically.

Run: ``.venv/bin/python benchmarks/simulate.py [--n 4000] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import io
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_json

from spectraldl.simulate import lamost as lamost_sim
from spectraldl.simulate import simulate_archive
from spectraldl.simulate.fitsbytes import gzip_bytes
from spectraldl.simulate.population import Population


def archive_rate(archive: str, n: int, workers: int, **layout: str) -> dict[str, object]:
    """Write an archive of ``n`` files into a temporary folder; files per second."""
    folder = Path(tempfile.mkdtemp(prefix="sim-bench-"))
    before = _cpu_seconds()
    try:
        summary = simulate_archive(
            folder, archive=archive, n=n, seed=1, junk=0.01, workers=workers, **layout
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "case": f"{archive} {next(iter(layout.values()))} archive",
        "workers": workers,
        "files": n,
        "seconds": summary.seconds,
        "files_per_s": n / summary.seconds,
        # Worker processes are the forkserver's children, not ours: CPU only for 1 worker.
        "cpu_ms_per_file": (_cpu_seconds() - before) / n * 1e3 if workers == 1 else None,
    }


def command_rate(n: int, workers: int) -> dict[str, object]:
    """``spectraldl simulate --archive lamost`` of ``n`` files as a new process: files per
    second of its wall-clock time."""
    folder = Path(tempfile.mkdtemp(prefix="sim-bench-"))
    command = [sys.executable, "-m", "spectraldl.cli", "simulate", "--archive", "lamost"]
    command += ["-n", str(n), "-o", str(folder), "--seed", "1", "--junk", "0.01"]
    started = time.perf_counter()
    try:
        subprocess.run([*command, "-j", str(workers)], check=True, capture_output=True)
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "case": "lamost dr1 archive: whole command",
        "workers": workers,
        "files": n,
        "seconds": seconds,
        "files_per_s": n / seconds,
        "cpu_ms_per_file": None,
    }


def against_one_worker(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (1 worker first) with their rate's ratio to the first's."""
    for row in rows:
        row["ratio_vs_baseline"] = row["files_per_s"] / rows[0]["files_per_s"]
    return rows


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (load-independent cost)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def astropy_bytes(spec: lamost_sim.LamostSpectrum) -> bytes:
    """The same DR1 file written by astropy (header cards copied from ours)."""
    ours = lamost_sim.file_bytes(spec)
    header = fits.Header.fromstring(ours[: ours.find(b"END" + b" " * 77) + 80].decode("ascii"))
    third, _ = lamost_sim.subcontinuum(spec.flux, spec.ivar)
    image = np.stack([spec.flux, spec.ivar, third, spec.andmask, spec.ormask]).astype(np.float32)
    hdu = fits.PrimaryHDU(data=image, header=header)
    buffer = io.BytesIO()
    fits.HDUList([hdu]).writeto(buffer)
    return buffer.getvalue()


def write_step(n: int) -> list[dict[str, object]]:
    """Time composing + gzipping n DR1 files: our bytes vs astropy's writer."""
    population = Population.default("lamost")
    specs = [lamost_sim.simulate_one(i, seed=3, population=population) for i in range(n)]
    rows = []
    for name, writer in (
        ("astropy HDUList.writeto (baseline)", astropy_bytes),
        ("fitsbytes", lamost_sim.file_bytes),
    ):
        started = time.perf_counter()
        cpu = _cpu_seconds()
        for spec in specs:
            gzip_bytes(writer(spec), level=1)
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu
        rows.append(
            {
                "case": f"write+gzip DR1: {name}",
                "workers": 1,
                "files": n,
                "seconds": seconds,
                "files_per_s": n / seconds,
                "cpu_ms_per_file": cpu / n * 1e3,
            }
        )
    rows[1]["ratio_vs_baseline"] = rows[0]["seconds"] / rows[1]["seconds"]
    rows[0]["ratio_vs_baseline"] = 1.0
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4000, help="files per archive run")
    parser.add_argument(
        "--n-write", type=int, default=300, help="files in the write-step comparison"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = write_step(args.n_write)
    for archive, layout in (("lamost", {"release": "dr1"}), ("ondrejov", {"form": "ssap"})):
        rows += against_one_worker([archive_rate(archive, args.n, w, **layout) for w in (1, 2)])
    rows += against_one_worker([command_rate(args.n, w) for w in (1, 2)])
    info = machine()
    print(f"# simulate speed ({info['cpu']}, {info['cores']} cores)")
    print("| case | workers | files | seconds | files/s | CPU ms/file | ratio vs baseline |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cpu = "-" if r["cpu_ms_per_file"] is None else f"{r['cpu_ms_per_file']:.2f}"
        print(
            f"| {r['case']} | {r['workers']} | {r['files']} | {r['seconds']:.2f} | "
            f"{r['files_per_s']:.0f} | {cpu} | {r['ratio_vs_baseline']:.2f} |"
        )
    print("(archive and command rows: baseline = the same with 1 worker)")
    write_json(args.json, "simulate", rows)


if __name__ == "__main__":
    main()
