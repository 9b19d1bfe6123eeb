"""Behaviour kept: a fixed-seed simulate, ingest, classify, candidates run gives the same outputs.

The reference (tests/data/golden.json) was written before the package was
split into stage subpackages; `tests/golden.py` says how it is made.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from golden import (
    REFERENCE,
    array_fingerprint,
    differences,
    fingerprint_run,
    run_pipeline,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("golden")
    run_pipeline(root)
    return root


@pytest.mark.slow
def test_a_fixed_seed_run_gives_the_recorded_outputs(run: Path) -> None:
    expected = json.loads(REFERENCE.read_text())
    found = fingerprint_run(run)
    assert sorted(found) == sorted(expected)
    assert differences(found, expected) == []


def test_the_fingerprint_sees_one_value_changed_by_one_part_in_100_000() -> None:
    values = np.random.default_rng(1).normal(size=(20, 140)).astype(np.float32)
    changed = values.copy()
    changed[7, 70] *= 1.00001
    assert differences(array_fingerprint(changed), array_fingerprint(values)) != []
    assert differences(array_fingerprint(values.copy()), array_fingerprint(values)) == []
    swapped = values.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert differences(array_fingerprint(swapped), array_fingerprint(values)) != []


def test_a_changed_reference_entry_is_reported_by_path() -> None:
    expected = json.loads(REFERENCE.read_text())
    found = copy.deepcopy(expected)
    found.pop(next(iter(found)))
    assert any("missing" in line for line in differences(found, expected))


def test_single_floats_hide_the_last_bit_but_not_a_change(tmp_path: Path) -> None:
    value = 249.90625901686917
    cases = {"same": value, "last bit": float(np.nextafter(value, 1e3)), "changed": value * 1.00001}
    prints = {}
    for name, ra in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        header = fits.Header([("RA", ra)])
        fits.HDUList([fits.PrimaryHDU(header=header)]).writeto(folder / "spectrum.fits")
        row = {"id": "a", "novelty": ra, "halpha_vr": None}
        (folder / "index.html").write_text(
            f'<p>x</p><script id="data" type="application/json">{json.dumps([row])}</script>'
        )
        prints[name] = fingerprint_run(folder)
    assert differences(prints["last bit"], prints["same"]) == []
    changed = differences(prints["changed"], prints["same"])
    assert {line.split("/")[1] for line in changed} == {"index.html", "spectrum.fits"}
