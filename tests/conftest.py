"""Shared fixtures: the real test files and trees of broken files made from them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from spectraldl.io.bundled import bundled_files

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data: one real file per layout."""
    return DATA


@pytest.fixture(scope="session")
def real_files() -> list[Path]:
    """Every bundled real spectrum (LAMOST and Ondřejov)."""
    return [f.path for f in bundled_files()]


def _write_bad_files(folder: Path) -> dict[str, str]:
    """Broken files of every kind ingest must survive, made from real ones.

    Returns file name -> a word its error reason must contain.
    """
    dr1 = (DATA / "lamost-dr1" / "spec-55862-B6212_sp06-003.fits").read_bytes()
    raw = (DATA / "ondrejov-raw" / "uk220017.fits").read_bytes()
    expect = {}
    (folder / "zero.fits").write_bytes(b"")
    expect["zero.fits"] = "empty"
    (folder / "truncated-header.fits").write_bytes(dr1[:1000])
    expect["truncated-header.fits"] = "END"
    (folder / "truncated-data.fits").write_bytes(dr1[: len(dr1) // 2])
    expect["truncated-data.fits"] = "truncated"
    (folder / "notes.fits").write_text("observing log: clouds all night\n")
    expect["notes.fits"] = "not a FITS file"
    (folder / "random.fits.gz").write_bytes(np.random.default_rng(1).bytes(5000))
    expect["random.fits.gz"] = "not a FITS file"
    (folder / "cut.fits.gz").write_bytes(b"\x1f\x8b" + np.random.default_rng(2).bytes(300))
    expect["cut.fits.gz"] = "gzip"
    # NaN flux: the DR1 file with its flux row (row 0, big-endian float32) set to NaN.
    header_end = 2880 * ((dr1.find(b"END" + b" " * 77) + 80 + 2879) // 2880)
    nan_row = np.full(3904, np.nan, dtype=">f4").tobytes()
    nan_file = dr1[:header_end] + nan_row + dr1[header_end + len(nan_row) :]
    (folder / "nan-flux.fits").write_bytes(nan_file)
    expect["nan-flux.fits"] = "NaN"
    # Wrong layout: a real header claiming an unknown row list.
    rows = b"'Flux Inverse Subcontinuum Andmask Ormask'"
    wrong = dr1.replace(rows, b"'Sky Arc Flat Bias'".ljust(len(rows)))
    (folder / "wrong-layout.fits").write_bytes(wrong)
    expect["wrong-layout.fits"] = "not a spectrum of a known"
    # No H-alpha: the Ondřejov raw spectrum moved to 5000 Å.
    at = raw.find(b"CRVAL1  =")
    card = "CRVAL1  =                5000.0 / moved blueward for the test".ljust(80).encode()
    (folder / "no-halpha.fits").write_bytes(raw[:at] + card + raw[at + 80 :])
    expect["no-halpha.fits"] = "no H-alpha"
    return expect


@pytest.fixture
def bad_tree(tmp_path: Path) -> tuple[Path, dict[str, str], list[Path]]:
    """A tree mixing good real files with every kind of broken file.

    Returns (root, {bad file name: expected reason word}, good files).
    """
    root = tmp_path / "tree"
    (root / "bad").mkdir(parents=True)
    (root / "good" / "deeper").mkdir(parents=True)
    expect = _write_bad_files(root / "bad")
    good = []
    for sub in ("lamost-dr1", "lamost-dr7", "ondrejov-ssap"):
        for path in sorted((DATA / sub).iterdir()):
            target = root / "good" / "deeper" / path.name
            shutil.copy(path, target)
            good.append(target)
    (root / "good" / "README.txt").write_text("not a spectrum name, never read")
    return root, expect, good


def pytest_configure(config: pytest.Config) -> None:
    """Keep BLAS/torch threads modest: CI has two cores."""
    os.environ.setdefault("OMP_NUM_THREADS", "2")
