"""A corpus of bad inputs, made from the real fixtures, through `spectraldl ingest` and `classify`.

Every case is a builder in `CASES`: it writes its bad input(s) into a folder
and returns ``{path relative to the corpus: a word the reason must contain}``.
Add a case by adding a builder. Both commands run on the whole corpus (with
good real files mixed in), as a user runs them, under a timeout: no traceback,
no hang, every good file a row, every bad one named with a reason, and the
counts add up (inputs found = rows + bad).
"""

from __future__ import annotations

import csv
import gzip
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from classify_helpers import trained_model

from spectraldl.io.dataset import read_ids
from spectraldl.io.predictions import read_predictions

DATA = Path(__file__).parent / "data"
DR1 = DATA / "lamost-dr1" / "spec-55862-B6212_sp06-003.fits"
RAW = DATA / "ondrejov-raw" / "uk220017.fits"
SSAP = DATA / "ondrejov-ssap" / "uk220017.fits"
GOOD = [
    DR1,
    DATA / "lamost-dr2" / "spec-56257-GAC089N38V2_sp01-009.fit",
    DATA / "lamost-dr7" / "spec-58397-EG014118N254444M01_sp03-031.fits",
    DATA / "ondrejov-ssap" / "a201504150031.fits",
    SSAP,
]


def _with_card(data: bytes, key: str, value: str) -> bytes:
    """``data`` with the first header card of ``key`` replaced by ``KEY = value``."""
    at = 0
    while (at := data.index(f"{key:<8}=".encode(), at)) % 80:
        at += 1
    return data[:at] + f"{key:<8}= {value}".ljust(80).encode("latin-1") + data[at + 80 :]


def _write(folder: Path, name: str, content: bytes, word: str) -> dict[str, str]:
    (folder / name).write_bytes(content)
    return {name: word}


def empty(folder: Path) -> dict[str, str]:
    return _write(folder, "empty.fits", b"", "empty")


def not_fits(folder: Path) -> dict[str, str]:
    return _write(folder, "notes.fits", b"observing log: clouds all night\n", "not a FITS file")


def truncated(folder: Path) -> dict[str, str]:
    data = DR1.read_bytes()
    return {
        **_write(folder, "cut-header.fits", data[:1000], "END"),
        **_write(folder, "cut-data.fits", data[: len(data) // 2], "truncated"),
    }


def corrupt_gzip(folder: Path) -> dict[str, str]:
    packed = gzip.compress(DR1.read_bytes())
    return _write(folder, "corrupt.fits.gz", packed[: len(packed) // 2], "gzip")


def nan_flux(folder: Path) -> dict[str, str]:
    data = bytearray(DR1.read_bytes())
    start = 2880 * ((data.find(b"END" + b" " * 77) + 80 + 2879) // 2880)
    row = np.full(3904, np.nan, dtype=">f4").tobytes()
    data[start : start + len(row)] = row
    return _write(folder, "nan-flux.fits", bytes(data), "NaN")


def out_of_range(folder: Path) -> dict[str, str]:
    moved = _with_card(RAW.read_bytes(), "CRVAL1", "5000.0")
    return _write(folder, "no-halpha.fits", moved, "no H-alpha")


def symlink_loop(folder: Path) -> dict[str, str]:  # item 1
    (folder / "loop" / "deeper").mkdir(parents=True)
    (folder / "loop" / "deeper" / "up").symlink_to("..")
    (folder / "self.fits").symlink_to("self.fits")
    return {"loop/deeper/up": "symlink loop", "self.fits": "symlink loop"}


def not_regular(folder: Path) -> dict[str, str]:  # item 2
    os.mkfifo(folder / "pipe.fits")
    (folder / "zero.fits").symlink_to("/dev/zero")
    return {"pipe.fits": "FIFO", "zero.fits": "character device"}


def gzip_bomb(folder: Path) -> dict[str, str]:  # item 3
    with gzip.open(folder / "bomb.fits.gz", "wb", compresslevel=9) as handle:
        handle.write(DR1.read_bytes())
        zeros = bytes(1 << 24)
        for _ in range(16):
            handle.write(zeros)
    return {"bomb.fits.gz": "promise"}


def header_lies(folder: Path) -> dict[str, str]:  # item 16
    data = DR1.read_bytes()
    header = fits.getheader(DR1)
    fits.PrimaryHDU(np.tile(fits.getdata(DR1), (13, 1))[:64], header=header).writeto(
        folder / "tall.fits"
    )
    return {
        **_write(folder, "negative.fits", _with_card(data, "NAXIS1", "-5"), "NAXIS1"),
        "tall.fits": "wrong layout",
        **_write(folder, "integers.fits", _with_card(data, "BITPIX", "16"), "BITPIX"),
    }


def duplicate(folder: Path) -> dict[str, str]:
    shutil.copy(DR1, folder / "dr1-copy.fits")  # the same spectrum (id) as a good file
    return {"dr1-copy.fits": "duplicate"}


def odd_names(folder: Path) -> dict[str, str]:
    """A real spectrum whose name is not UTF-8, and a name with a comma, quotes and a newline."""
    with open(os.fsencode(folder) + b"/\xff\xfe-latin.fits", "wb") as handle:
        handle.write(GOOD[1].read_bytes())
    return {
        "\\xff\\xfe-latin.fits": "not valid UTF-8",
        **_write(folder, 'a,"b"\nc.fits', b"", "empty"),
    }


CASES: dict[str, Callable[[Path], dict[str, str]]] = {
    "empty": empty,
    "not-fits": not_fits,
    "truncated": truncated,
    "corrupt-gzip": corrupt_gzip,
    "nan-flux": nan_flux,
    "out-of-range": out_of_range,
    "symlink-loop": symlink_loop,
    "not-regular": not_regular,
    "gzip-bomb": gzip_bomb,
    "header-lies": header_lies,
    "duplicate": duplicate,
    "odd-names": odd_names,
}


def _good(folder: Path) -> list[str]:
    """Good real files, some under a linked folder and under suffixes discovery once missed."""
    (folder / "0-real").mkdir()
    names = []
    for path in GOOD:
        shutil.copy(path, folder / "0-real" / path.name)
        names.append(f"0-real/{path.name}")
    elsewhere = folder.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "raw.fit.gz").write_bytes(gzip.compress(RAW.read_bytes()))
    (folder / "linked").symlink_to(elsewhere)
    names.append("linked/raw.fit.gz")
    reversed_ssap = folder / "0-real" / "ssap-reversed.fits"
    with fits.open(SSAP) as hdul:
        hdul[1].data = hdul[1].data[::-1].copy()
        hdul[1].header["DS_IDPUB"] = "ivo://corpus/reversed"
        hdul.writeto(reversed_ssap)
    names.append("0-real/ssap-reversed.fits")
    return names


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], dict[str, str]]:
    """(corpus root, good files, {bad entry: reason word}), paths relative to the root."""
    root = tmp_path_factory.mktemp("corpus") / "corpus"
    root.mkdir()
    good = _good(root)
    bad: dict[str, str] = {}
    for name, build in CASES.items():
        folder = root / name
        folder.mkdir()
        bad.update({f"{name}/{path}": word for path, word in build(folder).items()})
    return root, good, bad


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "spectraldl.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=240)


def _check_errors(errors_csv: Path, root: Path, bad: dict[str, str]) -> None:
    with errors_csv.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    listed = {os.path.relpath(row["path"], root): row["reason"] for row in rows}
    assert set(listed) == set(bad)
    for path, word in bad.items():
        assert word in listed[path], (path, listed[path])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ingest_survives_the_corpus(corpus, tmp_path: Path) -> None:
    root, good, bad = corpus
    out = tmp_path / "all.h5"
    done = _run("ingest", str(root), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert len(read_ids(out)) == len(good)
    _check_errors(tmp_path / "all.h5.errors.csv", root, bad)
    found = len(good) + len(bad)
    assert f"{len(bad)} bad files" in done.stdout + done.stderr
    assert f"{found} files" in done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_classify_survives_the_corpus(corpus, tmp_path: Path) -> None:
    root, good, bad = corpus
    model = trained_model(tmp_path)
    out = tmp_path / "all.csv"
    done = _run("classify", str(root), "--model", str(model), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    rows = read_predictions(out)
    assert sorted(os.path.relpath(s, root) for s in rows["source"]) == sorted(good)
    _check_errors(tmp_path / "all.csv.errors.csv", root, bad)
    found = len(good) + len(bad)
    assert f"{len(bad)} bad files" in done.stdout + done.stderr
    assert f"{found} inputs" in done.stdout + done.stderr
