"""How fast does `spectraldl simulate` write archives? Files per second, and against astropy.

Rows: LAMOST DR1 (gzipped) and Ondřejov SSAP archives written by
`simulate_archive` with 1 and 2 worker processes; the LAMOST archive by the
whole command a user types (``spectraldl simulate``, a new process: imports
and worker start-up included) with 1 and 2 workers, and with 2 workers at
archive scale (``--n-scale`` files), where its half second of start-up weighs
as little as it does on a training set or an archive; and the write step alone,
composing FITS bytes ourselves (`spectraldl.simulate.fitsbytes`) against the
baseline of astropy's writer (``HDUList.writeto``) for the same spectra,
measured in the same run. The tests show astropy reads our bytes identically.

Every archive stays on disk until the last run has ended (about 2 GB at the
default ``--n`` and ``--n-scale``). Deleting one before the next run made that run measure the
file system instead: ext4 without a journal passes over the inodes freed in
the last minute (six, while their inode table is not yet written back) one by
one when it makes a new file, and a profile (perf) of a 2-worker run just after
such a deletion found a quarter of its samples in that search
(``recently_deleted``) and in the two workers waiting for each other's folder
lock. Deletions by others (a test run, an earlier benchmark) count too, so the
1-worker rows give the CPU time per file in the kernel (``sys``) beside the
total, which shows when a run paid for it; ``make bench`` runs this benchmark
first. The "file system" row makes as many files of the same size through a
temporary name with no simulation: the file system's own cost.

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

from spectraldl.core.atomic import atomic_write
from spectraldl.simulate import lamost as lamost_sim
from spectraldl.simulate import simulate_archive
from spectraldl.simulate.fitsbytes import gzip_bytes
from spectraldl.simulate.population import Population

COMMAND = "lamost dr1 archive: whole command"
"""The case of the whole command's rows."""
COMMAND_AT_SCALE = f"{COMMAND}, archive scale"
"""The case of its row at ``--n-scale`` files, where its start-up (about half a second:
imports, the workers' start) no longer counts as it does at ``--n``."""


def archive_rate(
    root: Path, archive: str, n: int, workers: int, **layout: str
) -> dict[str, object]:
    """Write an archive of ``n`` files into a new folder of ``root``; files per second."""
    folder = Path(tempfile.mkdtemp(prefix="archive-", dir=root))
    before, kernel = _cpu_seconds(), _kernel_seconds()
    summary = simulate_archive(
        folder, archive=archive, n=n, seed=1, junk=0.01, workers=workers, **layout
    )
    # Worker processes are the forkserver's children, not ours: CPU only for 1 worker.
    return {
        "case": f"{archive} {next(iter(layout.values()))} archive",
        "workers": workers,
        "files": n,
        "seconds": summary.seconds,
        "files_per_s": n / summary.seconds,
        "cpu_ms_per_file": (_cpu_seconds() - before) / n * 1e3 if workers == 1 else None,
        "sys_ms_per_file": (_kernel_seconds() - kernel) / n * 1e3 if workers == 1 else None,
    }


def command_rate(root: Path, n: int, workers: int, case: str = COMMAND) -> dict[str, object]:
    """``spectraldl simulate --archive lamost`` of ``n`` files as a new process, into a new
    folder of ``root``: files per second of its wall-clock time."""
    folder = Path(tempfile.mkdtemp(prefix="command-", dir=root))
    command = [sys.executable, "-m", "spectraldl.cli", "simulate", "--archive", "lamost"]
    command += ["-n", str(n), "-o", str(folder), "--seed", "1", "--junk", "0.01"]
    started = time.perf_counter()
    subprocess.run([*command, "-j", str(workers)], check=True, capture_output=True)
    seconds = time.perf_counter() - started
    return {
        "case": case,
        "workers": workers,
        "files": n,
        "seconds": seconds,
        "files_per_s": n / seconds,
        "cpu_ms_per_file": None,
        "sys_ms_per_file": None,
    }


def file_system_rate(root: Path, n: int, size: int) -> dict[str, object]:
    """Create, write and rename ``n`` files of ``size`` bytes in a new folder of ``root``, as
    `simulate_archive` writes each file (`atomic_write`), with no simulation: files per second."""
    folder = Path(tempfile.mkdtemp(prefix="files-", dir=root))
    data = bytes(size)
    started, cpu, kernel = time.perf_counter(), _cpu_seconds(), _kernel_seconds()
    for i in range(n):
        with atomic_write(folder / f"{i}.fits.gz") as tmp:
            tmp.write_bytes(data)
    seconds = time.perf_counter() - started
    return {
        "case": f"file system: create, write, rename {size // 1000} kB files, no simulation",
        "workers": 1,
        "files": n,
        "seconds": seconds,
        "files_per_s": n / seconds,
        "cpu_ms_per_file": (_cpu_seconds() - cpu) / n * 1e3,
        "sys_ms_per_file": (_kernel_seconds() - kernel) / n * 1e3,
        "ratio_vs_baseline": None,
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


def _kernel_seconds() -> float:
    """The part of `_cpu_seconds` spent in the kernel (making files, above all)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_stime + resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime


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
                "sys_ms_per_file": None,
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
    parser.add_argument(
        "--n-scale",
        type=int,
        default=20000,
        help="files of the whole command's run at archive scale, 2 workers (0: none)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = write_step(args.n_write)
    root = Path(tempfile.mkdtemp(prefix="sim-bench-"))
    try:
        for archive, layout in (("lamost", {"release": "dr1"}), ("ondrejov", {"form": "ssap"})):
            rows += against_one_worker(
                [archive_rate(root, archive, args.n, w, **layout) for w in (1, 2)]
            )
        rows += against_one_worker([command_rate(root, args.n, w) for w in (1, 2)])
        if args.n_scale:
            rows.append(command_rate(root, args.n_scale, 2, COMMAND_AT_SCALE))
            rows[-1]["ratio_vs_baseline"] = None
        sizes = [p.stat().st_size for p in root.glob("command-*/**/*.fits.gz")]
        rows.append(file_system_rate(root, args.n, int(np.median(sizes))))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    info = machine()
    print(f"# simulate speed ({info['cpu']}, {info['cores']} cores)")
    print("| case | workers | files | seconds | files/s | CPU ms/file | of it kernel | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        cpu = "-" if r["cpu_ms_per_file"] is None else f"{r['cpu_ms_per_file']:.2f}"
        sys_ms = "-" if r["sys_ms_per_file"] is None else f"{r['sys_ms_per_file']:.2f}"
        ratio = "-" if r["ratio_vs_baseline"] is None else f"{r['ratio_vs_baseline']:.2f}"
        print(
            f"| {r['case']} | {r['workers']} | {r['files']} | {r['seconds']:.2f} | "
            f"{r['files_per_s']:.0f} | {cpu} | {sys_ms} | {ratio} |"
        )
    print("(archive and command rows: baseline = the same with 1 worker)")
    write_json(args.json, "simulate", rows)


if __name__ == "__main__":
    main()
