"""`preprocess_many` gives `preprocess`'s results bit for bit, on real and simulated files."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest

from spectraldl.core.errors import SpectrumError
from spectraldl.core.quality import Quality
from spectraldl.core.spectrum import Spectrum
from spectraldl.io.archives import read_spectrum
from spectraldl.prep.batch import MIN_GROUP, preprocess_many
from spectraldl.prep.preprocess import PreprocessConfig, Preprocessed, preprocess
from spectraldl.simulate.archive import simulate_archive

CONFIG = PreprocessConfig()


def _one_by_one(spectra: list[Spectrum]) -> list[Preprocessed | Exception]:
    out: list[Preprocessed | Exception] = []
    for spectrum in spectra:
        try:
            out.append(preprocess(spectrum, CONFIG))
        except SpectrumError as exc:
            out.append(exc)
    return out


def _assert_same(spectra: list[Spectrum]) -> list[Preprocessed | Exception]:
    expected = _one_by_one(spectra)
    got = preprocess_many(spectra, CONFIG)
    assert len(got) == len(expected)
    for spectrum, want, have in zip(spectra, expected, got, strict=True):
        if isinstance(want, Exception):
            assert type(have) is type(want) and str(have) == str(want), spectrum.id
            continue
        assert isinstance(have, Preprocessed), spectrum.id
        assert have.x.dtype == np.float32
        assert np.array_equal(have.x, want.x), spectrum.id
        assert have.quality == want.quality, spectrum.id
        assert have.snr == want.snr or (np.isnan(have.snr) and np.isnan(want.snr)), spectrum.id
    return got


def _read_all(folder: Path) -> list[Spectrum]:
    spectra = []
    for path in sorted(folder.rglob("*.fit*")):
        try:
            spectra.append(read_spectrum(path))
        except SpectrumError:
            continue
    return spectra


def test_real_files_of_both_archives(real_files: list[Path]) -> None:
    spectra = [read_spectrum(p) for p in real_files]
    assert sum(s.meta.archive == "lamost" for s in spectra) >= MIN_GROUP
    _assert_same(spectra)


@pytest.mark.parametrize(
    ("archive", "release", "form"),
    [
        ("lamost", "dr1", "ssap"),
        ("lamost", "dr2", "ssap"),
        ("lamost", "dr6", "ssap"),
        ("lamost", "dr8", "ssap"),
        ("ondrejov", "dr1", "raw"),
    ],
)
def test_simulated_files_with_junk(tmp_path: Path, archive: str, release: str, form: str) -> None:
    simulate_archive(
        tmp_path, archive=archive, n=120, seed=5, junk=0.25, release=release, form=form
    )
    spectra = _read_all(tmp_path)
    assert len(spectra) > 60
    _assert_same(spectra)


def _variant(base: Spectrum, i: int, **changes: np.ndarray | None) -> Spectrum:
    meta = dataclasses.replace(base.meta, id=f"{base.id}-{i}")
    return dataclasses.replace(base, meta=meta, **changes)


def test_the_cases_the_grouped_path_hands_back(real_files: list[Path]) -> None:
    """Spikes, NaN, a constant window, masks, bad ivar, no S/N: each as `preprocess` says."""
    base = next(s for s in map(read_spectrum, real_files) if s.meta.archive == "lamost")
    window = np.flatnonzero((base.wave_aa > 6540) & (base.wave_aa < 6700))
    beyond = np.flatnonzero((base.wave_aa > 6500) & (base.wave_aa < 6750))
    spectra = []
    for i in range(3 * MIN_GROUP):
        flux = base.flux * (1.0 + 0.01 * i)
        ivar, mask, meta = base.ivar, base.mask, base.meta
        match i % 8:
            case 1:
                flux = flux.copy()
                flux[window[40]] += 1e4  # a cosmic ray
            case 2:
                flux = flux.copy()
                flux[window[10 : 10 + i]] = np.nan
            case 3:
                flux = flux.copy()
                flux[beyond] = 7.0
            case 4:
                mask = np.zeros(base.flux.size, bool)
                mask[window[3]] = True
            case 5:
                ivar = np.zeros(base.flux.size)
            case 6:
                meta = dataclasses.replace(meta, snr=float("nan"))
            case 7:
                flux = -flux
        meta = dataclasses.replace(meta, id=f"{base.id}-{i}")
        spectra.append(dataclasses.replace(base, flux=flux, ivar=ivar, mask=mask, meta=meta))
    got = _assert_same(spectra)
    flags = [g.quality for g in got if isinstance(g, Preprocessed)]
    for flag in (Quality.SPIKE, Quality.NONFINITE, Quality.MASKED, Quality.BAD_IVAR):
        assert any(f & flag for f in flags), flag
    assert any(f & Quality.SNR_FROM_DATA for f in flags)
    assert any(f & Quality.NONPOSITIVE_FLUX for f in flags)
    assert any(isinstance(g, SpectrumError) and "constant" in str(g) for g in got)


def test_small_groups_and_mixed_grids(real_files: list[Path]) -> None:
    """A grid with fewer than MIN_GROUP spectra, and a shifted grid, interleaved with others."""
    lamost = [s for s in map(read_spectrum, real_files) if s.meta.archive == "lamost"]
    base = lamost[0]
    shifted = [_variant(base, i, wave_aa=base.wave_aa * 1.0003) for i in range(MIN_GROUP - 1)]
    spectra = [s for pair in zip(lamost, shifted, strict=False) for s in pair] + lamost[7:]
    _assert_same(spectra)


def test_an_empty_chunk() -> None:
    assert preprocess_many([], CONFIG) == []


def test_a_group_with_infinite_flux_gives_no_numpy_warnings(real_files: list[Path]) -> None:
    """A spectrum with inf in its window goes to `preprocess` without the group's arithmetic
    on it printing RuntimeWarnings to the user."""
    spectrum = next(s for s in map(read_spectrum, real_files) if s.meta.archive == "lamost")
    flux = spectrum.flux.copy()
    flux[np.searchsorted(spectrum.wave_aa, 6600.0)] = np.inf
    spectra = [spectrum] * MIN_GROUP + [dataclasses.replace(spectrum, flux=flux)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _assert_same(spectra)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
