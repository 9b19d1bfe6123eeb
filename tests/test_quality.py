"""Quality flags of doubtful data: each crafted from a real LAMOST file, none a clean candidate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from classify_helpers import trained_model

from spectraldl.catalogue.candidates import Selection
from spectraldl.classify.run import classify
from spectraldl.core.errors import SpectrumError
from spectraldl.core.quality import UNUSABLE, Quality
from spectraldl.core.spectrum import CORRUPT_FACTOR, Spectrum
from spectraldl.io.archives import read_spectrum
from spectraldl.io.bundled import bundled_files
from spectraldl.io.predictions import read_predictions
from spectraldl.prep.batch import MIN_GROUP, preprocess_many
from spectraldl.prep.measure import der_snr, halpha_window, measure_halpha, spike_pixels
from spectraldl.prep.preprocess import (
    PreprocessConfig,
    Preprocessed,
    preprocess,
    vacuum_wavelengths,
)

DR1 = "lamost-dr1/spec-55862-B6212_sp06-003.fits"
"""A real ordinary F9 star, SN_R = 99, no flags."""


@pytest.fixture
def star(data_dir: Path):
    return read_spectrum(data_dir / DR1)


def _window(spectrum) -> np.ndarray:
    grid = PreprocessConfig().grid_aa
    wave = vacuum_wavelengths(spectrum)
    return (wave >= grid[0]) & (wave <= grid[-1])


def _with(spectrum, **changes):
    return dataclasses.replace(spectrum, **changes)


def _snr(spectrum, value: float):
    return _with(spectrum, meta=dataclasses.replace(spectrum.meta, snr=value))


@pytest.mark.parametrize("value", [0.0, np.nan, -1.0])
def test_ivar_unusable_over_the_window_is_flagged(star, value: float) -> None:
    assert preprocess(star).quality == Quality(0)
    ivar = star.ivar.copy()
    ivar[_window(star)] = value
    assert preprocess(_with(star, ivar=ivar)).quality == Quality.BAD_IVAR


def test_ivar_zero_at_the_halpha_peak_alone_is_no_doubt(star) -> None:
    # LAMOST zeroes the ivar at the peak of strong emission (14 pixels in a real Be star).
    ivar = star.ivar.copy()
    ivar[np.flatnonzero(np.abs(vacuum_wavelengths(star) - 6564.6) < 10)] = 0.0
    assert preprocess(_with(star, ivar=ivar)).quality == Quality(0)


def test_negative_flux_over_the_window_is_flagged(star) -> None:
    flux = star.flux.copy()
    flux[_window(star)] *= -1.0
    assert Quality.NONPOSITIVE_FLUX in preprocess(_with(star, flux=flux)).quality


def test_zero_flux_over_the_window_is_refused(star) -> None:
    flux = star.flux.copy()
    flux[_window(star)] = 0.0
    with pytest.raises(SpectrumError, match="constant") as info:
        preprocess(_with(star, flux=flux))
    assert "spec-55862-B6212_sp06-003" in str(info.value)


def test_a_huge_spike_is_flagged_and_interpolated_over(star) -> None:
    """A thousand times the flux (beyond a million times it, a value is corrupt: below)."""
    clean = preprocess(star)
    flux = star.flux.copy()
    flux[np.flatnonzero(_window(star))[40]] = 1e3 * np.median(star.flux[_window(star)])
    spiked = preprocess(_with(star, flux=flux))
    assert spiked.quality == Quality.SPIKE
    assert np.abs(spiked.x - clean.x).max() < 0.2


def test_spikes_are_one_pixel_events_not_lines() -> None:
    rng = np.random.default_rng(0)
    pixels = np.arange(140.0)
    flux = 100.0 + rng.normal(0, 1, 140)
    line = flux + 300.0 * np.exp(-0.5 * ((pixels - 70) / 1.3) ** 2)  # R ~ 1800 emission
    assert not spike_pixels(line).any()
    spiked = flux.copy()
    spiked[30] += 80.0
    spiked[100] -= 1e30
    assert list(np.flatnonzero(spike_pixels(spiked))) == [30, 100]


def test_a_missing_snr_is_measured_from_the_flux(star) -> None:
    result = preprocess(_snr(star, np.nan))
    assert result.quality == Quality.SNR_FROM_DATA
    assert result.snr == pytest.approx(der_snr(star.flux[_window(star)]))
    # A noisy spectrum without an S/N keyword is LOW_SNR from its measured S/N.
    rng = np.random.default_rng(1)
    noisy = star.flux + rng.normal(0, 300.0, star.flux.size)
    flagged = preprocess(_snr(_with(star, flux=noisy), np.nan))
    assert flagged.snr < 10
    assert flagged.quality == Quality.SNR_FROM_DATA | Quality.LOW_SNR


def test_pure_noise_claiming_a_high_snr_is_flagged(star) -> None:
    rng = np.random.default_rng(2)
    noise = rng.normal(0.0, 1.0, star.flux.size)
    result = preprocess(_with(star, flux=noise))
    assert Quality.SNR_MISMATCH in result.quality and result.snr == 99.0
    # Noise about a positive level still contradicts SN_R = 99.
    offset = preprocess(_with(star, flux=noise + 2.0))
    assert offset.quality == Quality.SNR_MISMATCH


def test_no_real_bundled_spectrum_gains_a_flag() -> None:
    """The measured thresholds leave every real spectrum as flagged as before."""
    new = UNUSABLE | Quality.SPIKE | Quality.SNR_FROM_DATA | Quality.NONFINITE
    for entry in bundled_files():
        try:
            result = preprocess(read_spectrum(entry.path))
        except SpectrumError:
            continue  # the dead red arm of sp06-145, refused as before
        assert not result.quality & new, (entry.path, result.quality)


def _blocked(spectrum: Spectrum, at_aa: float, width: int = 7, value: float = 1e30) -> Spectrum:
    """``spectrum`` with ``width`` pixels about the one nearest ``at_aa`` (vacuum) = ``value``."""
    start = int(np.argmin(np.abs(vacuum_wavelengths(spectrum) - at_aa))) - width // 2
    flux = spectrum.flux.copy()
    flux[start : start + width] = value
    return _with(spectrum, flux=flux)


def test_a_block_of_absurd_values_is_corrupt_not_a_line(star) -> None:
    """Seven pixels of 1e30 (no spike: each has a neighbour as high) are corrupt values, as
    NaN would be: NONFINITE in the window and interpolated over; at H-alpha the line is then
    unmeasurable, never an enormous one. Outside the window nothing changes. The batched
    path gives the same bits (before, the block at H-alpha set no flag at all)."""
    clean = preprocess(star)
    blocks = {
        "halpha": _blocked(star, 6564.6),
        "halpha-negative": _blocked(star, 6564.6, value=-1e30),
        "in-window": _blocked(star, 6700.0),
        "one-pixel": _blocked(star, 6564.6, width=1),
        "outside-window": _blocked(star, 6490.0),
    }
    results = {name: preprocess(spectrum) for name, spectrum in blocks.items()}
    for name, result in results.items():
        assert np.isfinite(result.x).all() and np.abs(result.x).max() < 10, name
        assert result.quality == (Quality(0) if name == "outside-window" else Quality.NONFINITE)
    assert np.array_equal(results["outside-window"].x, clean.x)
    limit = CORRUPT_FACTOR * np.median(np.abs(star.flux))
    for spectrum in blocks.values():
        values = halpha_window(spectrum).values  # what a chunk keeps to measure
        assert not (np.abs(values) > limit).any()
    for name in ("halpha", "halpha-negative"):
        assert measure_halpha(blocks[name]).halpha_flag == "masked core"
    batch = preprocess_many([star] * MIN_GROUP + list(blocks.values()))[MIN_GROUP:]
    for got, want in zip(batch, results.values(), strict=True):
        assert isinstance(got, Preprocessed)
        assert np.array_equal(got.x, want.x) and got.quality == want.quality


def test_corrupt_values_are_found_where_an_arm_is_all_zeros(star) -> None:
    """A LAMOST spectrum whose blue arm failed (0.0 below 6000 Å, more than half its pixels)
    still has a scale: its non-zero pixels'. Before, the median was 0, no bound was left
    and a block of 1e30 at H-alpha was measured as a line of EW -9e27 Å, unflagged."""
    flux = star.flux.copy()
    flux[vacuum_wavelengths(star) < 6000] = 0.0
    assert 2 * np.count_nonzero(flux == 0) > flux.size
    one_arm = _with(star, flux=flux)
    assert np.array_equal(one_arm.flux, flux)  # the zeros themselves are no corrupt values
    blocked = _blocked(one_arm, 6564.6)
    assert preprocess(blocked).quality & Quality.NONFINITE
    assert measure_halpha(blocked).halpha_flag == "masked core"


def test_strong_real_emission_is_no_corrupt_value() -> None:
    """A real star with strong H-alpha emission (EW below -40 Å) keeps every pixel, and so
    does the same line ten thousand times stronger: the bound is relative and far away."""
    path = next(f.path for f in bundled_files(archive="lamost") if "sp14-183" in f.path.name)
    emitter = read_spectrum(path)
    assert measure_halpha(emitter).halpha_ew_aa < -40
    with fits.open(path) as hdul:
        assert np.array_equal(emitter.flux, hdul[0].data[0].astype(np.float64))
    continuum = np.median(emitter.flux)
    line = np.abs(vacuum_wavelengths(emitter) - 6564.6) < 10
    flux = emitter.flux.copy()
    flux[line] = continuum + 1e4 * (flux[line] - continuum)
    stronger = _with(emitter, flux=flux)
    assert np.array_equal(stronger.flux, flux)
    for spectrum in (emitter, stronger):
        assert not preprocess(spectrum).quality & Quality.NONFINITE


def _crafted(source: Path, folder: Path) -> dict[str, Quality]:
    """Bad variants of a real DR1 file, each with the flag it must get."""
    with fits.open(source) as hdul:
        data = hdul[0].data.astype(np.float32)
        header = hdul[0].header.copy()
    wave = 10 ** (header["COEFF0"] + header["COEFF1"] * np.arange(data.shape[1]))
    window = (wave > 6519) & (wave < 6732)
    rng = np.random.default_rng(3)
    variants: dict[str, tuple[np.ndarray, fits.Header, Quality]] = {}

    def add(name: str, change, flag: Quality, drop: str | None = None) -> None:
        rows, head = data.copy(), header.copy()
        head["FILENAME"] = f"{name}.fits"
        change(rows)
        if drop:
            del head[drop]
        variants[name] = (rows, head, flag)

    add("ivar-zero", lambda r: r[1].__setitem__(window, 0.0), Quality.BAD_IVAR)
    add("ivar-nan", lambda r: r[1].__setitem__(window, np.nan), Quality.BAD_IVAR)
    add("ivar-negative", lambda r: r[1].__setitem__(window, -1.0), Quality.BAD_IVAR)
    add("negative", lambda r: r[0].__setitem__(window, -r[0][window]), Quality.NONPOSITIVE_FLUX)
    spike = 1e3 * float(np.median(data[0][window]))  # a cosmic ray, not a corrupt value
    add("spike", lambda r: r[0].__setitem__(np.flatnonzero(window)[70], spike), Quality.SPIKE)
    add("no-snr", lambda r: None, Quality.SNR_FROM_DATA, drop="SN_R")
    add(
        "noise",
        lambda r: r[0].__setitem__(slice(None), rng.normal(0, 1, r.shape[1])),
        Quality.SNR_MISMATCH,
    )
    expected = {}
    for name, (rows, head, flag) in variants.items():
        fits.PrimaryHDU(rows, head).writeto(folder / f"{name}.fits")
        expected[name] = flag
    return expected


def test_crafted_files_carry_their_flags_through_classify_and_candidates(
    data_dir: Path, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    expected = _crafted(data_dir / DR1, inputs)
    model = trained_model(tmp_path)
    out = tmp_path / "predictions.parquet"
    summary = classify(model, [inputs], out)
    assert summary.rows == len(expected) and not summary.errors
    table = read_predictions(out).set_index("id", drop=False)
    for name, flag in expected.items():
        assert table.loc[name, "quality"] & int(flag), (name, table.loc[name, "quality_flags"])
    assert table.loc["spike", "quality_flags"] == "SPIKE"
    assert table.loc["no-snr", "quality_flags"] == "SNR_FROM_DATA"
    # Even at p = 1 for emission, the unusable ones never pass the default cut; the
    # repaired spike and the measured S/N stay candidates, their flag in the catalogue.
    sure = table.copy()
    for column in [c for c in sure.columns if c.startswith("p_")]:
        sure[column] = 1.0 if column == "p_emission" else 0.0
    sure["predicted_class"] = "emission"
    assert set(sure.index[Selection().mask(sure)]) == {"spike", "no-snr"}
