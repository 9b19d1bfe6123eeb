"""Blur calibration: a known sigma is recovered from real spectra; the real pairs are measured."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from process_helpers import refused_while_locked

from spectraldl.analysis.calibrate import (
    C_KM_S,
    CalibrationError,
    bundled_pairs_csv,
    calibrate_blur,
    find_pairs,
    fit_pair,
    plot_calibration,
    read_pairs_csv,
)
from spectraldl.cli import main
from spectraldl.core.errors import SpectrumError
from spectraldl.core.spectrum import Spectrum, SpectrumMeta
from spectraldl.io.archives import read_spectrum
from spectraldl.io.bundled import real_dir
from spectraldl.prep.preprocess import air_to_vacuum, blur

GAMMA_CAS_RAW = real_dir() / "ondrejov/raw/uk220017.fits"
BT_CMI_SSAP = real_dir() / "ondrejov/ssap/a201402110019.fits"
DR1_TEMPLATE = real_dir() / "lamost/dr1/spec-56284-GAC122S02V2_sp14-183.fits.gz"


def lamost_like(
    ondrejov: Spectrum,
    *,
    sigma_px: float,
    velocity_km_s: float = 20.0,
    snr: float = 200.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A real Ondřejov spectrum blurred by ``sigma_px``, shifted, tilted, on LAMOST's grid.

    LAMOST's grid: vacuum, log-linear with COEFF1 = 1e-4, here 6300-6900 Å.
    Returns (wavelengths, flux).
    """
    coeff0 = math.log10(6300.0)
    wave = 10.0 ** (coeff0 + 1e-4 * np.arange(410))
    vacuum = air_to_vacuum(ondrejov.wave_aa) * (1.0 + velocity_km_s / C_KM_S)
    flux = np.interp(wave, vacuum, blur(ondrejov.flux, sigma_px=sigma_px))
    flux *= 1.0 + 0.15 * (wave - 6600.0) / 300.0
    rng = np.random.default_rng(seed)
    flux += rng.normal(0.0, np.median(flux) / snr, flux.size)
    return wave, flux


def write_dr1(path: Path, wave: np.ndarray, flux: np.ndarray) -> Path:
    """A LAMOST DR1 file: a real DR1 header, the five rows replaced."""
    from astropy.io import fits

    header = fits.getheader(DR1_TEMPLATE)
    header["COEFF0"] = math.log10(wave[0])
    header["COEFF1"] = 1e-4
    header["CRVAL1"] = math.log10(wave[0])
    header["FILENAME"] = path.name.removesuffix(".gz")
    image = np.zeros((5, wave.size), dtype=np.float32)
    image[0] = flux
    image[1] = 1.0 / (0.01 * np.median(flux)) ** 2
    image[2] = np.median(flux)
    fits.PrimaryHDU(data=image, header=header).writeto(path)
    return path


@pytest.mark.parametrize("true_sigma", [4.5, 8.0])
def test_native_space_recovers_a_known_sigma_and_shift(true_sigma: float) -> None:
    ondrejov = read_spectrum(GAMMA_CAS_RAW)
    wave, flux = lamost_like(ondrejov, sigma_px=true_sigma)
    lamost = Spectrum(
        wave_aa=wave, flux=flux, medium="vacuum", meta=SpectrumMeta(id="fake", archive="lamost")
    )
    fit = fit_pair(ondrejov, lamost, space="native")
    assert fit.sigma_px == pytest.approx(true_sigma, abs=0.3)
    assert fit.best_velocity_km_s == pytest.approx(20.0, abs=2.0)
    # The curve has one clear minimum: far from it the mismatch is worse.
    assert fit.mismatch_at(true_sigma + 4) > 1.5 * fit.min_mismatch
    assert fit.mismatch_at(max(true_sigma - 4, 0)) > 1.5 * fit.min_mismatch


def test_grid_space_recovers_a_known_sigma_within_a_pixel() -> None:
    # On the 140-point grid, LAMOST's 1.5 Å pixels are interpolated once more, which
    # adds up to about a pixel of smoothing depending on how the grids fall.
    ondrejov = read_spectrum(BT_CMI_SSAP)
    wave, flux = lamost_like(ondrejov, sigma_px=6.0, velocity_km_s=-35.0)
    lamost = Spectrum(
        wave_aa=wave, flux=flux, medium="vacuum", meta=SpectrumMeta(id="fake", archive="lamost")
    )
    fit = fit_pair(ondrejov, lamost, space="grid")
    assert 5.7 <= fit.sigma_px <= 7.2
    assert fit.best_velocity_km_s == pytest.approx(-35.0, abs=3.0)


def test_without_the_velocity_nuisance_the_estimate_is_biased() -> None:
    # Why the shift is fitted: a 60 km/s offset left in makes the line look broader.
    ondrejov = read_spectrum(GAMMA_CAS_RAW)
    wave, flux = lamost_like(ondrejov, sigma_px=5.0, velocity_km_s=60.0)
    lamost = Spectrum(
        wave_aa=wave, flux=flux, medium="vacuum", meta=SpectrumMeta(id="fake", archive="lamost")
    )
    fitted = fit_pair(ondrejov, lamost, space="native")
    frozen = fit_pair(
        ondrejov, lamost, space="native", max_velocity_km_s=0.0, velocity_step_km_s=1.0
    )
    assert fitted.sigma_px == pytest.approx(5.0, abs=0.3)
    assert frozen.sigma_px > fitted.sigma_px + 1.0


@pytest.mark.slow
def test_cli_json_on_written_fits_pairs_skips_missing(tmp_path: Path) -> None:
    ondrejov_dir = tmp_path / "ondrejov"
    lamost_dir = tmp_path / "lamost" / "dr1"
    lamost_dir.mkdir(parents=True)
    ondrejov_dir.mkdir()
    rows = []
    for k, source in enumerate([GAMMA_CAS_RAW, BT_CMI_SSAP]):
        copy = ondrejov_dir / source.name
        copy.write_bytes(source.read_bytes())
        wave, flux = lamost_like(read_spectrum(copy), sigma_px=6.5, seed=k)
        name = f"spec-99999-TEST_sp01-{k:03d}.fits"
        write_dr1(lamost_dir / name, wave, flux)
        rows.append(f"data/cross-matched/ondrejov/{source.name},elsewhere/{name}")
    rows.append("data/ondrejov/zz000000.fits,data/lamost/spec-00000-NONE_sp01-001.fits")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("\n".join(rows) + "\n")
    plot = tmp_path / "blur.png"
    result = CliRunner().invoke(
        main,
        [
            "calibrate-blur",
            "--pairs",
            str(pairs),
            str(ondrejov_dir),
            str(tmp_path / "lamost"),
            "--space",
            "native",
            "--json",
            "--plot",
            str(plot),
            "--bootstrap",
            "200",
            "--pair-plots",
            str(tmp_path / "steps"),
            "--details",
            str(tmp_path / "blur.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary) == {"sigma_px", "uncertainty_px", "pairs"}
    assert summary["pairs"] == 2
    assert summary["sigma_px"] == pytest.approx(6.5, abs=0.4)
    assert summary["uncertainty_px"] < 0.5
    assert "zz000000.fits not found" in result.stderr
    details = json.loads((tmp_path / "blur.json").read_text())
    assert details["sigma_px"] == summary["sigma_px"] and len(details["per_pair"]) == 2
    assert [s["ondrejov"] for s in details["skipped"]] == ["data/ondrejov/zz000000.fits"]
    assert plot.stat().st_size > 10_000
    assert plot.with_suffix(".svg").read_text().lstrip().startswith("<?xml")
    steps = sorted(p.name for p in (tmp_path / "steps").iterdir())
    assert steps == sorted(
        f"{s}~spec-99999-TEST_sp01-{k:03d}.{ext}"
        for k, s in enumerate(["uk220017", "a201402110019"])
        for ext in ("png", "svg")
    )


def test_bundled_real_pairs(tmp_path: Path) -> None:
    pairs, missing = find_pairs(bundled_pairs_csv(), [real_dir()], [real_dir()])
    assert len(pairs) + len(missing) == 22
    assert len(pairs) >= 8
    result = calibrate_blur(
        bundled_pairs_csv(), [real_dir()], [real_dir()], n_bootstrap=300, seed=1
    )
    assert result.pairs == len(pairs)
    assert len(result.skipped) == len(missing)
    # What the data say, loosely: a few Ondřejov pixels, as the resolving powers predict.
    assert 3.0 < result.sigma_px < 12.0
    assert 0.0 < result.uncertainty_px < 3.0
    assert result.interval_px[0] <= result.sigma_px <= result.interval_px[1]
    assert 5.5 < result.predicted_sigma_px < 7.0
    details = result.to_dict()
    assert len(details["per_pair"]) == result.pairs
    json.dumps(details, allow_nan=False)
    files = plot_calibration(result, tmp_path / "calibration")
    assert [f.suffix for f in files] == [".png", ".svg"]
    assert all(f.stat().st_size > 10_000 for f in files)


@pytest.mark.parametrize("held", ["details", "plot"])
def test_a_second_run_on_an_output_another_run_writes_is_refused_and_touches_nothing(
    tmp_path: Path, held: str
) -> None:
    """While this process holds one output as a first run would, a real second
    `calibrate-blur` process stops at once with one line naming it, and writes none of its
    outputs: --details (written in place) and the figures' half-written temporaries."""
    first = {
        tmp_path / "blur.json": b"{}",
        tmp_path / "blur.png": b"the first run's figure",
        tmp_path / ".blur.tmp.svg": b"<svg the first run's figure, half written",
    }
    for path, data in first.items():
        path.write_bytes(data)
    locked = {"details": tmp_path / "blur.json", "plot": tmp_path / "blur.png"}[held]
    args = ["calibrate-blur", "--pairs", str(bundled_pairs_csv()), str(real_dir())]
    args += ["--plot", str(tmp_path / "blur.png"), "--details", str(tmp_path / "blur.json")]
    args += ["--pair-plots", str(tmp_path / "steps"), "--bootstrap", "2"]
    refused_while_locked(locked, args)
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == first


def test_details_in_a_missing_folder_is_one_line_before_any_work(tmp_path: Path) -> None:
    nowhere = tmp_path / "missing-folder" / "blur.json"
    args = ["calibrate-blur", "--pairs", str(bundled_pairs_csv()), str(real_dir())]
    result = CliRunner().invoke(main, [*args, "--details", str(nowhere), "--bootstrap", "2"])
    assert result.exit_code == 1 and result.exc_info and result.exc_info[0] is SystemExit
    assert result.output == f"Error: {nowhere}: No such file or directory\n"
    assert not nowhere.parent.exists()


def test_bad_pairs_csv_names_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "pairs.csv"
    bad.write_text("a.fits,b.fits\nonly-one-column.fits\n")
    with pytest.raises(CalibrationError, match=r"pairs\.csv, line 2"):
        read_pairs_csv(bad)
    result = CliRunner().invoke(main, ["calibrate-blur", "--pairs", str(bad), str(tmp_path)])
    assert result.exit_code == 1
    assert "line 2" in result.output
    assert "Traceback" not in result.output


def test_a_pair_listed_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    """A repeated pair counted twice: its weight doubled, and the bootstrap of one pair given
    twice reported an uncertainty of 0.0. The same names in other folders are the same pair."""
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "# ondrejov,lamost\nre040028.fits,a.fits\nx.fits,b.fits\nold/re040028.fit,a.fits.gz\n"
    )
    result = CliRunner().invoke(main, ["calibrate-blur", "--pairs", str(pairs), str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {pairs}, line 4: the pair old/re040028.fit, a.fits.gz is also on line 2; list "
        "each pair once (a pair twice counts twice)"
    )
    pairs.write_text("re040028.fits,a.fits\nre040028.fits,b.fits\n")
    assert len(read_pairs_csv(pairs)) == 2


def test_a_pairs_csv_in_another_encoding_or_separator_says_so(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("étoile.fits,spec.fits\n".encode("latin-1"))
    with pytest.raises(CalibrationError, match=r"latin1\.csv: not UTF-8 text.*CSV UTF-8"):
        read_pairs_csv(latin1)
    result = CliRunner().invoke(main, ["calibrate-blur", "--pairs", str(latin1), str(tmp_path)])
    assert result.exit_code == 1 and "latin1.csv: not UTF-8 text" in result.output
    assert "Traceback" not in result.output
    utf16 = tmp_path / "utf16.csv"
    utf16.write_text("a.fits,b.fits\n", encoding="utf-16")
    with pytest.raises(CalibrationError, match=r"utf16\.csv: not UTF-8 text \(UTF-16"):
        read_pairs_csv(utf16)
    semicolon = tmp_path / "semicolon.csv"
    semicolon.write_text("a.fits;b.fits\n")
    with pytest.raises(CalibrationError, match=r"line 1.*separated by semicolons"):
        read_pairs_csv(semicolon)
    bom = tmp_path / "bom.csv"
    bom.write_text("a.fits,b.fits\n", encoding="utf-8-sig")
    assert read_pairs_csv(bom) == [("a.fits", "b.fits")]


def test_no_usable_pair_is_a_clear_error(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("x1.fits,y1.fits\n")
    with pytest.raises(CalibrationError, match="no usable pair"):
        calibrate_blur(pairs, [tmp_path], [tmp_path])


def test_a_pair_with_swapped_columns_is_skipped_naming_its_file(tmp_path: Path) -> None:
    """LAMOST first and Ondřejov second, or one archive twice, is no pair to measure the blur
    on: skipped with the reason (it was fitted, LAMOST blurred to match Ondřejov: sigma 0.46,
    or 0 for a file against itself), and alone a one-line error."""
    hip = ("re040028.fits", "spec-55967-B5596701_sp06-132.fits")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"{hip[1]},{hip[0]}\n{hip[0]},{hip[0]}\n{hip[0]},{hip[1]}\n")
    result = calibrate_blur(pairs, [real_dir()], [real_dir()], n_bootstrap=10)
    assert result.pairs == 1 and 6.0 < result.sigma_px < 9.0
    reasons = [m.reason for m in result.skipped]
    assert len(reasons) == 2 and all("columns swapped?" in r for r in reasons)
    assert "archive lamost, not ondrejov" in reasons[0] and hip[1] in reasons[0]
    assert "archive ondrejov, not lamost" in reasons[1] and hip[0] in reasons[1]
    pairs.write_text(f"{hip[1]},{hip[0]}\n")
    result = CliRunner().invoke(
        main, ["calibrate-blur", "--pairs", str(pairs), str(real_dir()), "--json"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no usable pair" in result.output and "columns swapped?" in result.output


def test_a_spectrum_without_finite_flux_is_refused_naming_its_file() -> None:
    ondrejov = read_spectrum(GAMMA_CAS_RAW)
    wave, flux = lamost_like(ondrejov, sigma_px=5.0)
    lamost = Spectrum(
        wave_aa=wave, flux=flux, medium="vacuum", meta=SpectrumMeta(id="fake", archive="lamost")
    )
    blank = Spectrum(
        wave_aa=ondrejov.wave_aa,
        flux=np.full(ondrejov.wave_aa.size, np.nan),
        medium=ondrejov.medium,
        meta=ondrejov.meta,
    )
    with pytest.raises(SpectrumError, match=r"uk220017\.fits: fewer than two finite"):
        fit_pair(blank, lamost)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--continuum-degree", "-1"),
        ("--continuum-degree", "11"),
        ("--max-velocity", "-5"),
        ("--max-velocity", "nan"),
        ("--bootstrap", "0"),
        ("--bootstrap", "-1"),
        ("--max-sigma", "nan"),
        ("--max-sigma", "0"),
        ("--step", "nan"),
        ("--step", "1e-6"),
        ("--step", "-0.25"),
        ("--seed", "-1"),
    ],
)
def test_meaningless_numbers_are_usage_errors_naming_the_option(
    tmp_path: Path, option: str, value: str
) -> None:
    """Negative counts, NaN and values that measure nothing stop before any pair is read."""
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a.fits,b.fits\n")
    result = CliRunner().invoke(
        main, ["calibrate-blur", "--pairs", str(pairs), str(tmp_path), option, value]
    )
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output
    assert "Traceback" not in result.output
