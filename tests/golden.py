"""Fingerprints of every output of a small fixed-seed run, to show that behaviour did not change.

The run: `simulate` (LAMOST dr1 with junk, LAMOST dr8, Ondřejov ssap and raw),
`ingest` with the truth labels, `classify` of the dataset and of the FITS
tree with the shipped `cnn-small`, and `candidates` with its catalogue and
gallery. Each output becomes a fingerprint: exact digests of bytes, strings
and integers; for floating-point arrays their shape, NaN count and three
float64 sums (plain, squared, and weighted by fixed random signs), compared
to a relative 1e-6; single floats (header cards, attributes, JSON values, the
gallery's data) to 9 significant digits. So a CPU whose vector maths or BLAS
kernels round the last bit differently (AVX-512 against AVX2) still passes
while any real change of a value does not.

    .venv/bin/python tests/golden.py --write   # only when a change of behaviour is meant

The reference is tests/data/golden.json; say why it changed in the commit.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner

from spectraldl.catalogue.gallery import DATA_BLOCK

REFERENCE = Path(__file__).parent / "data" / "golden.json"
RTOL = 1e-6
# Header cards and dataset attributes that carry the moment or the machine of a run.
VOLATILE = ("DATE", "created", "time", "version", "host", "elapsed", "last_ingest")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


class Paths:
    """Where the run was made: its folder and the path digests in gallery names become fixed."""

    root = ""

    @classmethod
    def normal(cls, text: str) -> str:
        """``text`` as if the run had been made in /RUN."""
        return re.sub(r"-[0-9a-f]{6}\.png", "-HASH.png", text.replace(cls.root, "/RUN"))


def _volatile(name: str) -> bool:
    low = name.lower()
    return any(word.lower() in low for word in VOLATILE)


def _rounded(value: Any) -> Any:
    """A float as text to 9 significant digits (last-bit rounding hidden); others unchanged."""
    return format(value, ".9g") if isinstance(value, float) else value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def array_fingerprint(values: np.ndarray) -> dict[str, Any]:
    """Exact digest for integers, strings and booleans; sums for floating point."""
    values = np.asarray(values)
    if values.dtype.kind not in "fc":
        if values.dtype.kind in "OUS":
            values = np.array([Paths.normal(_text(v)) for v in values.ravel()])
        data = np.ascontiguousarray(values).tobytes()
        return {"shape": list(values.shape), "digest": _digest(data)}
    flat = values.astype(np.float64).ravel()
    finite = np.where(np.isfinite(flat), flat, 0.0)
    signs = np.random.default_rng(len(flat)).choice([-1.0, 1.0], size=len(flat))
    return {
        "shape": list(values.shape),
        "dtype": values.dtype.str,
        "nan": int(np.isnan(flat).sum()),
        "sums": [float(finite.sum()), float((finite**2).sum()), float((finite * signs).sum())],
    }


def fits_fingerprint(path: Path) -> dict[str, Any]:
    """Every HDU's header (without dates) and data of one FITS file (gzipped or not)."""
    try:
        return {"hdus": _hdu_fingerprints(path)}
    except (OSError, TypeError, ValueError):
        return {"bytes": _digest(path.read_bytes())}


def _hdu_fingerprints(path: Path) -> list[dict[str, Any]]:
    out = []
    with fits.open(path, memmap=False) as hdus:
        for hdu in hdus:
            cards = [
                [card.keyword, repr(_rounded(card.value))]
                for card in hdu.header.cards
                if not _volatile(card.keyword)
            ]
            entry: dict[str, Any] = {"header": _digest(json.dumps(cards).encode())}
            if isinstance(hdu, fits.BinTableHDU):
                entry["columns"] = {
                    name: array_fingerprint(hdu.data[name]) for name in hdu.columns.names
                }
            elif hdu.data is not None:
                entry["data"] = array_fingerprint(hdu.data)
            out.append(entry)
    return out


def h5_fingerprint(path: Path) -> dict[str, Any]:
    """Every array and attribute of an HDF5 file, without run times and versions."""
    out: dict[str, Any] = {}

    def visit(name: str, node: Any) -> None:
        attrs = {
            k: Paths.normal(str(_rounded(v))) for k, v in node.attrs.items() if not _volatile(k)
        }
        out[name + "@attrs"] = _digest(json.dumps(attrs, sort_keys=True).encode())
        if isinstance(node, h5py.Dataset):
            out[name] = array_fingerprint(node[()])

    with h5py.File(path, "r") as h5:
        visit("/", h5)
        h5.visititems(visit)
    return out


def table_fingerprint(path: Path) -> dict[str, Any]:
    """Every column of a table (parquet, CSV, FITS, VOTable), without its metadata."""
    if path.suffix == ".csv":
        text = Paths.normal(path.read_text())
        if text.count("\n") < 2:
            return {"text": _digest(text.encode())}
        table = Table.read(text, format="ascii.csv")
    else:
        table = Table.read(path)
    return {name: array_fingerprint(np.asarray(table[name])) for name in table.colnames}


def json_fingerprint(path: Path) -> str:
    """A JSON file without its volatile keys (at any depth)."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if not _volatile(k)}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return Paths.normal(value) if isinstance(value, str) else _rounded(value)

    return _digest(json.dumps(clean(json.loads(path.read_text())), sort_keys=True).encode())


def html_fingerprint(path: Path) -> dict[str, Any]:
    """A page's text; a gallery's data block (its candidates' rows) column by column."""
    text = Paths.normal(path.read_text())
    found = DATA_BLOCK.search(text)
    if found is None:
        return {"text": _digest(text.encode())}
    rows = json.loads(found.group(1))
    data = {}
    for column in sorted({key for row in rows for key in row}):
        values = [row.get(column) for row in rows]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
            array = np.array([np.nan if v is None else v for v in values], dtype=float)
        else:
            array = np.array([json.dumps(v) for v in values])
        data[column] = array_fingerprint(array)
    page = text[: found.start(1)] + text[found.end(1) :]
    return {"text": _digest(page.encode()), "data": data}


def output_fingerprint(path: Path) -> Any:
    """The fingerprint of one output file, by its kind."""
    name = path.name
    if name.endswith((".fits", ".fits.gz")) and "candidates" not in name:
        return fits_fingerprint(path)
    if name.endswith(".h5"):
        return h5_fingerprint(path)
    if name.endswith((".parquet", ".vot", ".csv")) or name.endswith("candidates.fits"):
        return table_fingerprint(path)
    if name.endswith(".json"):
        return json_fingerprint(path)
    if name.endswith(".png"):
        return {"png": True}
    if name.endswith(".html"):
        return html_fingerprint(path)
    return {"bytes": _digest(path.read_bytes())}


def _cli(*args: str) -> None:
    from spectraldl.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"spectraldl {' '.join(args)} failed:\n{result.output}")


def run_pipeline(root: Path) -> None:
    """The fixed-seed run whose outputs are fingerprinted (about 20 s on 2 cores)."""
    sim = root / "sim"
    _cli(
        "simulate",
        "--archive",
        "lamost",
        "-n",
        "24",
        "-o",
        str(sim / "dr1"),
        "--seed",
        "11",
        "--junk",
        "0.2",
        "-j",
        "2",
    )
    _cli(
        "simulate",
        "--archive",
        "lamost",
        "-n",
        "6",
        "-o",
        str(sim / "dr8"),
        "--seed",
        "12",
        "--release",
        "dr8",
        "-j",
        "1",
    )
    _cli(
        "simulate",
        "--archive",
        "ondrejov",
        "-n",
        "8",
        "-o",
        str(sim / "ssap"),
        "--seed",
        "13",
        "-j",
        "2",
    )
    _cli(
        "simulate",
        "--archive",
        "ondrejov",
        "-n",
        "4",
        "-o",
        str(sim / "raw"),
        "--seed",
        "14",
        "--form",
        "raw",
        "-j",
        "1",
    )
    out = root / "out"
    _cli(
        "ingest",
        str(sim / "dr1"),
        str(sim / "dr8"),
        "-o",
        str(out / "lamost.h5"),
        "--labels",
        str(sim / "dr1" / "truth.csv"),
        "-j",
        "2",
    )
    _cli(
        "ingest",
        str(sim / "ssap"),
        str(sim / "raw"),
        "-o",
        str(out / "ondrejov.h5"),
        "--labels",
        str(sim / "ssap" / "truth.csv"),
        "-j",
        "1",
    )
    _cli(
        "classify",
        "cnn-small",
        str(out / "lamost.h5"),
        "-o",
        str(out / "from-h5.parquet"),
        "-j",
        "1",
    )
    _cli(
        "classify",
        "cnn-small",
        str(sim / "dr1"),
        str(sim / "dr8"),
        "-o",
        str(out / "from-fits.parquet"),
        "-j",
        "2",
        "--chunk-files",
        "7",
    )
    _cli(
        "candidates",
        str(out / "from-fits.parquet"),
        "--min-prob",
        "0.5",
        "--include-flagged",
        "-o",
        str(out / "candidates.csv"),
        "-o",
        str(out / "candidates.fits"),
        "-o",
        str(out / "candidates.vot"),
        "--gallery",
        str(out / "gallery"),
        "-j",
        "2",
    )


def fingerprint_run(root: Path) -> dict[str, Any]:
    """Fingerprints of every file under ``root``, by relative path (a classify table's kept
    parts aside: they hold the table's rows, in chunks)."""
    Paths.root = str(root)
    return {
        Paths.normal(str(path.relative_to(root))): output_fingerprint(path)
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and not path.name.endswith(".lock")
        and not path.parent.name.endswith(".parts")
    }


def differences(found: Any, expected: Any, where: str = "") -> list[str]:
    """Where two fingerprints differ (floats compared to RTOL)."""
    if isinstance(expected, dict) and isinstance(found, dict):
        out = [f"{where}/{k}: missing" for k in expected if k not in found]
        out += [f"{where}/{k}: not expected" for k in found if k not in expected]
        for key in expected.keys() & found.keys():
            out += differences(found[key], expected[key], f"{where}/{key}")
        return out
    if isinstance(expected, list) and isinstance(found, list) and len(found) == len(expected):
        out = []
        for i, (f, e) in enumerate(zip(found, expected, strict=True)):
            out += differences(f, e, f"{where}[{i}]")
        return out
    if isinstance(expected, float) and isinstance(found, float):
        scale = max(abs(expected), 1.0)
        return [] if abs(found - expected) <= RTOL * scale else [f"{where}: {found} != {expected}"]
    return [] if found == expected else [f"{where}: {found!r} != {expected!r}"]


def main(argv: list[str]) -> None:
    """`--write`: run the pipeline in a temporary folder and store its fingerprints."""
    import tempfile

    if argv != ["--write"]:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as tmp:
        run_pipeline(Path(tmp))
        prints = fingerprint_run(Path(tmp))
    buffer = io.StringIO()
    json.dump(prints, buffer, indent=1, sort_keys=True)
    REFERENCE.write_text(buffer.getvalue() + "\n")
    print(f"wrote {REFERENCE} ({len(prints)} files)")


if __name__ == "__main__":
    main(sys.argv[1:])
