"""Preprocessing: the thesis steps, published numbers, quality flags and refusals."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from spectraldl.core.errors import SpectrumError
from spectraldl.core.quality import Quality, flag_names
from spectraldl.io.archives import read_spectrum
from spectraldl.prep.preprocess import (
    HALPHA_VACUUM_AA,
    PreprocessConfig,
    air_to_vacuum,
    blur,
    make_grid,
    preprocess,
    regrid,
    sigma_px_for_resolution,
    standardise,
    vacuum_wavelengths,
)


def test_halpha_air_to_vacuum_is_the_published_value() -> None:
    assert float(air_to_vacuum(6562.80)) == pytest.approx(6564.61, abs=0.005)
    assert pytest.approx(6564.61, abs=0.005) == HALPHA_VACUUM_AA
    # Vacuum is always longer and the shift grows with wavelength in the optical.
    wave = np.linspace(4000, 9000, 50)
    shift = air_to_vacuum(wave) - wave
    assert np.all(shift > 0) and np.all(np.diff(shift) > 0)


def test_vacuum_wavelengths_convert_air_only(data_dir: Path) -> None:
    ondrejov = read_spectrum(data_dir / "ondrejov-ssap/a201504150031.fits")
    lamost = read_spectrum(next((data_dir / "lamost-dr2").iterdir()))
    assert ondrejov.medium == "air" and lamost.medium == "vacuum"
    np.testing.assert_array_equal(vacuum_wavelengths(ondrejov), air_to_vacuum(ondrejov.wave_aa))
    assert np.all(vacuum_wavelengths(ondrejov) > ondrejov.wave_aa)
    np.testing.assert_array_equal(vacuum_wavelengths(lamost), lamost.wave_aa)


def test_grid_is_the_thesis_grid() -> None:
    grid = make_grid()
    assert grid.shape == (140,) and grid[0] == 6519.0 and grid[-1] == 6732.0
    assert np.allclose(np.diff(grid), 213 / 139)
    assert np.array_equal(PreprocessConfig().grid_aa, grid)


def test_science_functions_take_keywords_only() -> None:
    with pytest.raises(TypeError):
        blur(np.ones(10), 7.0)  # type: ignore[misc]
    with pytest.raises(TypeError):
        regrid(np.arange(3.0), np.ones(3), np.arange(3.0))  # type: ignore[misc]


def test_blur_conserves_flux_and_spreads_a_line() -> None:
    flux = np.zeros(201)
    flux[100] = 1.0
    out = blur(flux, sigma_px=7.0)
    assert out.sum() == pytest.approx(1.0)
    assert out[100] == pytest.approx(1 / (7.0 * np.sqrt(2 * np.pi)), rel=1e-3)
    second_moment = np.sum(out * (np.arange(201) - 100) ** 2)
    assert second_moment == pytest.approx(49.0, rel=1e-3)
    assert np.array_equal(blur(flux, sigma_px=0), flux)
    with pytest.raises(ValueError):
        blur(flux, sigma_px=-1)


def test_sigma_for_resolution_matches_the_resolving_powers() -> None:
    wave = 6250 + 0.2566 * np.arange(2000)
    sigma = sigma_px_for_resolution(wave, from_resolving_power=13000, to_resolving_power=1800)
    fwhm = np.sqrt((HALPHA_VACUUM_AA / 1800) ** 2 - (HALPHA_VACUUM_AA / 13000) ** 2)
    assert sigma == pytest.approx(fwhm / 2.3548 / 0.2566, rel=1e-3)
    assert 5.5 < sigma < 6.5
    assert sigma_px_for_resolution(wave, from_resolving_power=1000, to_resolving_power=1800) == 0


def test_regrid_and_standardise() -> None:
    wave = np.linspace(6500, 6750, 400)
    flux = 2.0 + 0.001 * (wave - 6500)
    out = regrid(wave, flux, grid_aa=make_grid())
    assert np.allclose(out, 2.0 + 0.001 * (make_grid() - 6500))
    z = standardise(out)
    assert z.mean() == pytest.approx(0, abs=1e-12) and z.std() == pytest.approx(1)
    with pytest.raises(ValueError, match="constant"):
        standardise(np.ones(140))


def test_lamost_and_ondrejov_come_out_on_the_same_grid(data_dir: Path) -> None:
    for path in [
        "lamost-dr1/spec-55862-B6212_sp06-003.fits",
        "ondrejov-ssap/uk220017.fits",
        "ondrejov-raw/uk220017.fits",
        "lamost-mrs/med-58408-TD230151N343645T01_sp01-015.fits.gz",
    ]:
        result = preprocess(read_spectrum(data_dir / path))
        assert result.x.dtype == np.float32 and result.x.shape == (140,)
        assert float(result.x.mean()) == pytest.approx(0, abs=1e-5)
        assert float(result.x.std()) == pytest.approx(1, abs=1e-4)
    # The same gamma Cas observation in its two forms gives nearly the same vector.
    a = preprocess(read_spectrum(data_dir / "ondrejov-ssap/uk220017.fits")).x
    b = preprocess(read_spectrum(data_dir / "ondrejov-raw/uk220017.fits")).x
    assert np.corrcoef(a, b)[0, 1] > 0.99
    # gamma Cas is a strong emitter: the peak sits at H-alpha (vacuum).
    grid = make_grid()
    assert abs(grid[np.argmax(a)] - HALPHA_VACUUM_AA) < 3


def test_ondrejov_blur_follows_the_config(data_dir: Path) -> None:
    spectrum = read_spectrum(data_dir / "ondrejov-ssap/a201504150031.fits")
    sharp = preprocess(spectrum, PreprocessConfig(blur_sigma_px={"ondrejov": 0.0})).x
    soft = preprocess(spectrum).x
    # Blurring lowers the point-to-point roughness of the vector.
    assert np.abs(np.diff(soft, 2)).mean() < np.abs(np.diff(sharp, 2)).mean()


def _with(spectrum, **changes):
    return dataclasses.replace(spectrum, **changes)


def test_quality_flags(data_dir: Path) -> None:
    spectrum = read_spectrum(data_dir / "lamost-dr1/spec-55862-B6212_sp06-003.fits")
    assert preprocess(spectrum).quality == Quality(0)
    window = (spectrum.wave_aa > 6519) & (spectrum.wave_aa < 6732)

    flux = spectrum.flux.copy()
    flux[np.flatnonzero(window)[:5]] = np.nan
    assert preprocess(_with(spectrum, flux=flux)).quality == Quality.NONFINITE

    mask = np.zeros(spectrum.flux.size, bool)
    mask[np.flatnonzero(window)[10]] = True
    assert preprocess(_with(spectrum, mask=mask)).quality == Quality.MASKED

    low = _with(spectrum, meta=dataclasses.replace(spectrum.meta, snr=3.0))
    assert preprocess(low).quality == Quality.LOW_SNR

    keep = spectrum.wave_aa < 6700
    cut = _with(
        spectrum,
        wave_aa=spectrum.wave_aa[keep],
        flux=spectrum.flux[keep],
        ivar=spectrum.ivar[keep],
        mask=spectrum.mask[keep],
    )
    assert preprocess(cut).quality == Quality.PARTIAL_COVERAGE
    assert flag_names(int(Quality.MASKED | Quality.LOW_SNR)) == "MASKED|LOW_SNR"


def test_refusals_name_the_file(data_dir: Path) -> None:
    spectrum = read_spectrum(data_dir / "lamost-dr1/spec-55862-B6212_sp06-003.fits")
    flux = spectrum.flux.copy()
    flux[(spectrum.wave_aa > 6500) & (spectrum.wave_aa < 6750)] = np.inf
    with pytest.raises(SpectrumError, match="NaN or infinite") as info:
        preprocess(_with(spectrum, flux=flux))
    assert "spec-55862-B6212_sp06-003.fits" in str(info.value)
    blue = spectrum.wave_aa < 6000
    with pytest.raises(SpectrumError, match="no H-alpha coverage"):
        preprocess(
            _with(
                spectrum,
                wave_aa=spectrum.wave_aa[blue],
                flux=spectrum.flux[blue],
                ivar=None,
                mask=None,
            )
        )
    flat = np.full(spectrum.flux.size, 5.0)
    with pytest.raises(SpectrumError, match="constant"):
        preprocess(_with(spectrum, flux=flat))


def test_config_round_trips() -> None:
    config = PreprocessConfig(blur_sigma_px={"ondrejov": 6.0}, min_snr=5)
    assert PreprocessConfig.from_dict(config.to_dict()) == config
