"""Reading DR8+ LAMOST files (table form): `read_spectrum` against astropy, one core.

Since DR8 LAMOST writes each spectrum as an empty primary HDU and a one-row
COADD binary table. The rows: simulated, gzipped DR8 files read by
`spectraldl.io.archives.read_spectrum` (a whole `Spectrum`: arrays and header
metadata), against the baseline of astropy opening each file and converting
only the COADD table's first row to arrays, which is how the reader read such
tables before it viewed them in the file's bytes (`spectraldl.io.archives.bintable`).

    .venv/bin/python benchmarks/tables.py [--files 1000] [--json tables.json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import print_table, write_json


def astropy_first_rows(paths: list[Path]) -> int:
    """astropy opens each file and converts its COADD table's first row to arrays."""
    from astropy.io import fits

    done = 0
    for path in paths:
        with fits.open(path, memmap=False) as hdul:
            row = hdul[1].data[0]
            flux, _, _ = (
                np.asarray(row[c], dtype=np.float64) for c in ("FLUX", "IVAR", "WAVELENGTH")
            )
            done += bool(flux.size)
    return done


def spectraldl_reads(paths: list[Path]) -> int:
    """`spectraldl.io.archives.read_spectrum` of each file."""
    from spectraldl.io.archives import read_spectrum

    return sum(bool(read_spectrum(path).flux.size) for path in paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=1000, help="simulated DR8 files read")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()

    from spectraldl.simulate import simulate_archive

    runs: tuple[tuple[str, Callable[[list[Path]], int]], ...] = (
        ("astropy: the COADD table's first row (baseline)", astropy_first_rows),
        ("spectraldl read_spectrum", spectraldl_reads),
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        simulate_archive(tmp, archive="lamost", n=args.files, seed=4, release="dr8", workers=2)
        paths = sorted(Path(tmp).rglob("*.fits.gz"))
        for name, run in runs:
            start = time.perf_counter()
            run(paths)
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "files": "simulated DR8, gzipped",
                    "method": name,
                    "n_files": len(paths),
                    "seconds": seconds,
                    "files_per_s": len(paths) / seconds,
                }
            )
    for row in rows:
        row["vs_baseline"] = row["files_per_s"] / rows[0]["files_per_s"]
    print_table(
        f"Reading {len(paths)} DR8+ table-form files, one core",
        rows,
        ["files", "method", "n_files", "seconds", "files_per_s", "vs_baseline"],
    )
    write_json(args.json, "tables", rows)


if __name__ == "__main__":
    main()
