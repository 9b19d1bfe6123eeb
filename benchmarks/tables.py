"""Reading table-form spectra: `read_spectrum` against astropy, one core.

Two archives write a spectrum as an empty primary HDU and a binary table:
LAMOST since DR8 (one row of array columns, COADD) and Ondřejov's SSAP
service (a row a pixel: spectral, flux). The rows: simulated files of each,
read by `spectraldl.io.archives.read_spectrum` (a whole `Spectrum`: arrays
and header metadata), against the baseline of astropy opening each file and
converting only the table's spectrum columns to arrays, which is how the
readers read such tables before they viewed them in the file's bytes
(`spectraldl.io.archives.bintable`).

    .venv/bin/python benchmarks/tables.py [--files 1000] [--json tables.json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from _common import print_table, write_json

LAYOUTS = {
    "simulated LAMOST DR8, gzipped": (
        {"archive": "lamost", "release": "dr8"},
        ("FLUX", "IVAR", "WAVELENGTH"),
        "the COADD table's first row",
    ),
    "simulated Ondřejov SSAP": (
        {"archive": "ondrejov", "form": "ssap"},
        ("spectral", "flux"),
        "the table's spectral and flux columns",
    ),
}
"""Files read: ``simulate_archive`` arguments, the columns astropy converts, in words."""


def astropy_columns(paths: list[Path], names: tuple[str, ...], first_row: bool) -> int:
    """astropy opens each file and converts the table's ``names`` columns to arrays."""
    from astropy.io import fits

    done = 0
    for path in paths:
        with fits.open(path, memmap=False) as hdul:
            table = hdul[1].data
            source = table[0] if first_row else table
            arrays = [np.asarray(source[name], dtype=np.float64) for name in names]
            done += bool(arrays[0].size)
    return done


def spectraldl_reads(paths: list[Path]) -> int:
    """`spectraldl.io.archives.read_spectrum` of each file."""
    from spectraldl.io.archives import read_spectrum

    return sum(bool(read_spectrum(path).flux.size) for path in paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=1000, help="simulated files per archive")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()

    from spectraldl.simulate import simulate_archive

    rows = []
    for files, (layout, names, words) in LAYOUTS.items():
        with tempfile.TemporaryDirectory() as tmp:
            simulate_archive(tmp, n=args.files, seed=4, workers=2, **layout)
            paths = sorted(p for p in Path(tmp).rglob("*.fits*"))
            baseline = partial(
                astropy_columns, names=names, first_row=layout["archive"] == "lamost"
            )
            runs = (
                (f"astropy: {words} (baseline)", baseline),
                ("spectraldl read_spectrum", spectraldl_reads),
            )
            measured = []
            for name, run in runs:
                start = time.perf_counter()
                run(paths)
                seconds = time.perf_counter() - start
                measured.append(
                    {
                        "files": files,
                        "method": name,
                        "n_files": len(paths),
                        "seconds": seconds,
                        "files_per_s": len(paths) / seconds,
                    }
                )
        for row in measured:
            row["vs_baseline"] = row["files_per_s"] / measured[0]["files_per_s"]
        rows += measured
    print_table(
        f"Reading table-form spectra ({args.files} files each), one core",
        rows,
        ["files", "method", "n_files", "seconds", "files_per_s", "vs_baseline"],
    )
    write_json(args.json, "tables", rows)


if __name__ == "__main__":
    main()
