"""H-alpha measurements (`spectraldl.prep.measure.measure_halpha`) on analytic and real profiles."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from spectraldl.core.spectrum import Spectrum, SpectrumMeta
from spectraldl.io.archives import read_spectrum
from spectraldl.io.bundled import bundled_files
from spectraldl.prep.measure import (
    C_KMS,
    EMISSION_TYPES,
    HALPHA_VACUUM_AA,
    MEASUREMENT_COLUMNS,
    PROFILE_TYPES,
    LineMeasurement,
    finite_median,
    measure_halpha,
    measure_halpha_arrays,
)
from spectraldl.prep.preprocess import air_to_vacuum

DATA = Path(__file__).parent / "data"
SQRT_2PI = math.sqrt(2.0 * math.pi)


def gauss(wave: np.ndarray, centre: float, sigma: float, amplitude: float) -> np.ndarray:
    return amplitude * np.exp(-0.5 * ((wave - centre) / sigma) ** 2)


def spectrum(
    line: np.ndarray | None = None,
    *,
    step: float = 0.25,
    resolving_power: float = 13000.0,
    snr: float | None = None,
    seed: int = 0,
    wave: np.ndarray | None = None,
) -> Spectrum:
    """A sloped continuum times (1 + line) in vacuum, with ivar for ``snr`` (noise-free flux)."""
    wave = np.arange(6400.0, 6750.0, step) if wave is None else wave
    continuum = 1000.0 * (1.0 + 4e-4 * (wave - HALPHA_VACUUM_AA))
    flux = continuum * (1.0 + (np.zeros_like(wave) if line is None else line))
    sigma = continuum / (snr or 1e4)
    if snr is not None:
        flux = flux + np.random.default_rng(seed).normal(0.0, 1.0, wave.size) * sigma
    meta = SpectrumMeta(id="test", archive="test", resolving_power=resolving_power)
    return Spectrum(wave_aa=wave, flux=flux, medium="vacuum", meta=meta, ivar=sigma**-2.0)


def grid(step: float = 0.25) -> np.ndarray:
    return np.arange(6400.0, 6750.0, step)


def test_finite_median_gives_numpys_median_to_the_bit() -> None:
    # The simulator's files and the measurements must not change by a bit when it replaces
    # np.median: odd and even sizes, ties, and values whose mean of two rounds.
    rng = np.random.default_rng(0)
    for size in range(1, 60):
        for values in (
            rng.normal(size=size),
            rng.integers(0, 4, size) / 3.0,
            1e16 + rng.random(size),
        ):
            assert finite_median(values) == float(np.median(values))
    assert math.isnan(finite_median(np.array([])))


def test_gaussian_emission_has_its_negative_ew_width_and_height() -> None:
    w = grid()
    m = measure_halpha(spectrum(gauss(w, HALPHA_VACUUM_AA, 2.0, 3.0)))
    assert m.profile_type == "emission"
    assert m.halpha_ew_aa == pytest.approx(-3.0 * 2.0 * SQRT_2PI, rel=0.01)
    assert m.halpha_peak_ratio == pytest.approx(4.0, rel=0.01)
    fwhm_kms = 2.0 * math.sqrt(2.0 * math.log(2.0)) * 2.0 / HALPHA_VACUUM_AA * C_KMS
    assert m.halpha_fwhm_kms == pytest.approx(fwhm_kms, rel=0.03)
    assert math.isnan(m.halpha_peak_sep_kms) and math.isnan(m.halpha_vr)
    assert m.halpha_flag == ""


def test_gaussian_absorption_has_positive_ew_and_no_emission_width() -> None:
    w = grid()
    m = measure_halpha(spectrum(-gauss(w, HALPHA_VACUUM_AA + 2.0, 2.5, 0.6)))
    assert m.profile_type == "absorption"
    assert m.halpha_ew_aa == pytest.approx(0.6 * 2.5 * SQRT_2PI, rel=0.01)
    assert m.halpha_peak_ratio == pytest.approx(1.0, abs=0.01)
    assert math.isnan(m.halpha_fwhm_kms)


@pytest.mark.parametrize("step,resolving_power", [(0.25, 13000.0), (1.34, 1800.0)])
def test_two_gaussians_give_a_double_peak_with_its_separation_and_vr(
    step: float, resolving_power: float
) -> None:
    w = grid(step)
    sep_aa = 9.0
    line = gauss(w, HALPHA_VACUUM_AA - sep_aa / 2, 2.0, 1.2) + gauss(
        w, HALPHA_VACUUM_AA + sep_aa / 2, 2.0, 0.8
    )
    m = measure_halpha(spectrum(line, step=step, resolving_power=resolving_power))
    assert m.profile_type == "double-peak"
    assert m.halpha_peak_sep_kms == pytest.approx(sep_aa / HALPHA_VACUUM_AA * C_KMS, rel=0.05)
    assert m.halpha_vr == pytest.approx(1.2 / 0.8, rel=0.1)
    assert m.halpha_ew_aa == pytest.approx(-2.0 * SQRT_2PI * 2.0, rel=0.02)


def test_p_cygni_and_its_inverse() -> None:
    w = grid()
    absorb = -gauss(w, HALPHA_VACUUM_AA - 4.0, 1.5, 0.4)
    emit = gauss(w, HALPHA_VACUUM_AA + 2.0, 1.5, 1.0)
    m = measure_halpha(spectrum(absorb + emit))
    assert m.profile_type == "p-cygni"
    assert m.halpha_ew_aa == pytest.approx((0.4 - 1.0) * 1.5 * SQRT_2PI, rel=0.02)
    red_absorb = -gauss(w, HALPHA_VACUUM_AA + 4.0, 1.5, 0.4)
    mirrored = red_absorb + gauss(w, HALPHA_VACUUM_AA - 2.0, 1.5, 1.0)
    assert measure_halpha(spectrum(mirrored)).profile_type == "inverse-p-cygni"


def test_emission_inside_absorption_wings() -> None:
    w = grid()
    wings = -gauss(w, HALPHA_VACUUM_AA, 5.0, 0.5)
    single = measure_halpha(spectrum(wings + gauss(w, HALPHA_VACUUM_AA, 1.2, 0.8)))
    assert single.profile_type == "emission-in-absorption"
    assert single.halpha_ew_aa == pytest.approx(0.5 * 5 * SQRT_2PI - 0.8 * 1.2 * SQRT_2PI, abs=0.1)
    filled = measure_halpha(spectrum(wings + gauss(w, HALPHA_VACUUM_AA, 1.2, 0.3)))
    assert filled.profile_type == "emission-in-absorption"  # a core peak below the continuum
    assert filled.halpha_ew_aa > 0
    disc = gauss(w, HALPHA_VACUUM_AA - 3.5, 1.2, 0.9) + gauss(w, HALPHA_VACUUM_AA + 3.5, 1.2, 0.9)
    assert measure_halpha(spectrum(wings + disc)).profile_type == "double-peak-in-absorption"


def test_air_wavelengths_are_converted_before_measuring() -> None:
    w_air = np.arange(6400.0, 6750.0, 0.25)
    line = gauss(air_to_vacuum(w_air), HALPHA_VACUUM_AA, 2.0, 2.0)
    vac = spectrum(line, wave=air_to_vacuum(w_air))
    air = Spectrum(
        wave_aa=w_air, flux=vac.flux, medium="air", meta=vac.meta, ivar=vac.ivar, mask=None
    )
    assert repr(measure_halpha(air)) == repr(measure_halpha(vac))  # NaN fields included
    assert measure_halpha(air).halpha_ew_aa == pytest.approx(-2.0 * 2.0 * SQRT_2PI, rel=0.01)


def test_ew_error_bar_matches_the_scatter_of_noisy_copies() -> None:
    """Monte Carlo: 300 noise draws of one line; the stated error is the EWs' scatter."""
    w = grid(1.34)
    line = gauss(w, HALPHA_VACUUM_AA, 2.5, 1.0) - gauss(w, HALPHA_VACUUM_AA, 6.0, 0.2)
    truth = measure_halpha(spectrum(line, step=1.34, resolving_power=1800.0)).halpha_ew_aa
    draws = [
        measure_halpha(spectrum(line, step=1.34, resolving_power=1800.0, snr=20.0, seed=i))
        for i in range(300)
    ]
    ews = np.array([m.halpha_ew_aa for m in draws])
    errs = np.array([m.halpha_ew_err_aa for m in draws])
    assert np.std(ews) == pytest.approx(np.median(errs), rel=0.15)
    covered = np.mean(np.abs(ews - truth) <= errs)
    assert 0.60 <= covered <= 0.76
    assert abs(np.mean(ews) - truth) < 3 * np.std(ews) / math.sqrt(len(ews))


def test_ew_error_bar_counts_the_weak_lines_around_the_line() -> None:
    """Monte Carlo with structure: weak lines scattered over bands and line, new in each draw.

    Photon noise alone covered the truth 41 % of the time here; the structure seen in the
    bands (`STRUCTURE_SCALE_RESOLUTION`) and the fit's chi-square bring it near 68 %.
    """
    w = grid(1.34)
    truth = -2.0 * 2.5 * SQRT_2PI
    ews, errs = [], []
    for i in range(300):
        rng = np.random.default_rng(1000 + i)
        line = gauss(w, HALPHA_VACUUM_AA, 2.5, 2.0)
        for centre in rng.uniform(6440.0, 6700.0, 40):
            line = line - gauss(w, centre, 1.6, rng.uniform(0.0, 0.04))
        m = measure_halpha(spectrum(line, step=1.34, resolving_power=1800.0, snr=50.0, seed=i))
        ews.append(m.halpha_ew_aa)
        errs.append(m.halpha_ew_err_aa)
    ew, err = np.array(ews), np.array(errs)
    assert 0.58 <= np.mean(np.abs(ew - truth) <= err) <= 0.78
    assert np.median(err) == pytest.approx(np.std(ew), rel=0.25)


def test_noise_alone_is_not_emission() -> None:
    types = [
        measure_halpha(spectrum(None, step=1.34, resolving_power=1800.0, snr=10.0, seed=i))
        for i in range(100)
    ]
    assert sum(m.profile_type != "absorption" for m in types) <= 3


def test_bad_inputs_are_unmeasurable_with_a_reason_never_a_number() -> None:
    w = grid()
    good = spectrum(gauss(w, HALPHA_VACUUM_AA, 2.0, 3.0))

    def variant(**changes: object) -> LineMeasurement:
        fields = {"wave_aa": good.wave_aa, "flux": good.flux, "ivar": good.ivar, "mask": None}
        fields.update(changes)
        return measure_halpha(Spectrum(medium="vacuum", meta=good.meta, **fields))  # type: ignore[arg-type]

    core = np.abs(w - HALPHA_VACUUM_AA) < 3.0
    bands = (np.abs(w - HALPHA_VACUUM_AA) > 20.0) & (np.abs(w - HALPHA_VACUUM_AA) < 70.0)
    cases = {
        "masked core": variant(mask=core),
        "ivar zero": variant(ivar=np.zeros_like(w)),
        "no continuum": variant(flux=np.where(bands, np.nan, good.flux)),
        "no coverage": variant(wave_aa=w - 300.0),
    }
    negative = variant(flux=-good.flux)
    assert negative.profile_type == "unmeasurable" and negative.halpha_flag == "no continuum"
    for reason, m in cases.items():
        assert m.profile_type == "unmeasurable"
        assert m.halpha_flag == reason
        numbers = [getattr(m, k) for k, kind in MEASUREMENT_COLUMNS.items() if kind != "str"]
        assert all(math.isnan(x) for x in numbers)


def test_a_few_masked_pixels_are_interpolated_over() -> None:
    w = grid(1.34)
    s = spectrum(gauss(w, HALPHA_VACUUM_AA, 3.0, 2.0), step=1.34, resolving_power=1800.0)
    mask = np.zeros(w.size, bool)
    mask[np.argmin(np.abs(w - HALPHA_VACUUM_AA - 6.0))] = True
    masked = Spectrum(s.wave_aa, s.flux, "vacuum", s.meta, ivar=s.ivar, mask=mask)
    assert measure_halpha(masked).halpha_ew_aa == pytest.approx(s_ew := -2 * 3 * SQRT_2PI, rel=0.03)
    assert measure_halpha(s).halpha_ew_aa == pytest.approx(s_ew, rel=0.01)


def test_a_chunk_measured_together_equals_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """LAMOST files share a grid: a chunk's windows are measured in one batch, to rounding."""
    import spectraldl.prep.measure as measure
    from spectraldl.simulate import Population, simulate_spectra

    mix = {"emission": 0.4, "absorption": 0.3, "double-peak": 0.3}
    population = Population.default("lamost", mix)
    simulated = simulate_spectra(40, archive="lamost", seed=3, release="dr1", population=population)
    spectra = list(simulated.spectra)
    first = spectra[0]
    mask = np.zeros(first.wave_aa.size, bool)
    mask[np.argmin(np.abs(first.wave_aa - HALPHA_VACUUM_AA - 8.0))] = True
    spectra.append(
        Spectrum(first.wave_aa, first.flux, "vacuum", first.meta, ivar=first.ivar, mask=mask)
    )
    spectra.append(Spectrum(first.wave_aa, first.flux, "vacuum", first.meta))  # no ivar
    blue = Spectrum(first.wave_aa[:1000], first.flux[:1000], "vacuum", first.meta)
    spectra.append(blue)  # no coverage
    batches: list[int] = []
    together = measure._measure_together

    def counted(grid, values, ivar, detail):  # type: ignore[no-untyped-def]
        batches.append(len(values))
        return together(grid, values, ivar, detail)

    monkeypatch.setattr(measure, "_measure_together", counted)
    chunk = measure.measure_halpha_windows([measure.halpha_window(s) for s in spectra])
    assert len(batches) == 1 and batches[0] >= 30  # together; masked, ivar-less ones alone
    alone = [measure_halpha(s) for s in spectra]
    assert len(batches) == 1  # one spectrum at a time is measured alone
    assert alone[-1].halpha_flag == "no coverage" and chunk[-1] == alone[-1]
    assert sum(m.profile_type in EMISSION_TYPES for m in alone) >= 10
    for a, b in zip(alone, chunk, strict=True):
        assert (a.profile_type, a.halpha_flag) == (b.profile_type, b.halpha_flag)
        for name, kind in MEASUREMENT_COLUMNS.items():
            if kind != "str":
                assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-9, nan_ok=True)


def test_a_corrupt_pixel_at_halpha_is_not_measured_as_the_line() -> None:
    """One absurd pixel (a cosmic ray, a flipped byte) at H-alpha of a real emission-line star:
    the measurements interpolate over it as the network's input does, alone or in a batch
    (before, the EW came out near -2.5e35 Å and passed candidate cuts on EW)."""
    import spectraldl.prep.measure as measure

    path = next(f.path for f in bundled_files(archive="lamost") if "sp14-183" in f.path.name)
    clean = read_spectrum(path)
    peak = int(np.argmin(np.abs(clean.wave_aa - 6564.6)))
    hit = []
    for value in (3e38, 1e30, -1e30):
        flux = clean.flux.copy()
        flux[peak] = value
        hit.append(Spectrum(clean.wave_aa, flux, clean.medium, clean.meta, ivar=clean.ivar))
    expected = measure_halpha(clean).halpha_ew_aa
    assert expected < -30  # a strong emission line
    alone = [measure_halpha(s) for s in hit]
    batch = measure.measure_halpha_windows([measure.halpha_window(s) for s in [clean] * 10 + hit])[
        10:
    ]
    for m in [*alone, *batch]:
        assert m.halpha_ew_aa == pytest.approx(expected, rel=0.1)
        assert abs(m.halpha_peak_ratio) < 100


def test_as_dict_follows_the_columns() -> None:
    m = LineMeasurement.unmeasurable("no coverage")
    assert list(m.as_dict()) == list(MEASUREMENT_COLUMNS)
    assert not m.measured
    assert set(PROFILE_TYPES) >= {"emission", "double-peak", "absorption", "unmeasurable"}
    m2 = measure_halpha_arrays(wave_vacuum_aa=grid(), flux=np.ones(grid().size))
    assert m2.measured and m2.profile_type == "absorption" and abs(m2.halpha_ew_aa) < 1e-9


# --- real spectra ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relpath,kinds",
    [
        ("ondrejov-ssap/uk220017.fits", {"emission"}),  # gamma Cas
        ("ondrejov-raw/uk220017.fits", {"emission"}),
        ("ondrejov-ssap/a201504150031.fits", {"double-peak"}),  # V395 Aur
    ],
)
def test_real_emission_fixtures(relpath: str, kinds: set[str]) -> None:
    m = measure_halpha(read_spectrum(DATA / relpath))
    assert m.profile_type in kinds
    assert m.halpha_ew_aa < -2.0
    assert m.halpha_ew_err_aa < 0.2 * abs(m.halpha_ew_aa)
    if "double-peak" in kinds:
        assert 100.0 < m.halpha_peak_sep_kms < 400.0


def test_gamma_cas_ew_in_the_published_range() -> None:
    """gamma Cas: H-alpha EW about -30 to -45 Å in 2005-2015 (Pollmann et al. 2014, IBVS 6109)."""
    m = measure_halpha(read_spectrum(DATA / "ondrejov-ssap/uk220017.fits"))
    assert -45.0 < m.halpha_ew_aa < -25.0


def test_real_labelled_spectra_emission_negative_absorption_positive() -> None:
    labelled = [f for f in bundled_files() if f.label in ("emission", "double-peak", "absorption")]
    assert len(labelled) >= 20
    for f in labelled:
        m = measure_halpha(read_spectrum(f.path))
        assert m.measured, f.path
        if f.label == "absorption":
            assert m.halpha_ew_aa > 0 and m.profile_type == "absorption", f.path
        else:  # LAMOST pairs are labelled at Ondrejov (another epoch): their emission stays
            assert m.halpha_ew_aa < 0 and m.profile_type != "absorption", f.path


# --- measurements as columns: datasets, predictions, candidates ------------------------------


@pytest.fixture(scope="module")
def real_predictions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Predictions of the tiny test model on the bundled real labelled spectra, read as files."""
    from classify_helpers import trained_model

    from spectraldl.classify.run import classify

    folder = tmp_path_factory.mktemp("measure")
    model = trained_model(folder)
    out = folder / "predictions.parquet"
    labelled = [f.path for f in bundled_files() if f.label]
    classify(model, labelled, out)
    return out


def test_predictions_carry_the_measurements_of_the_files_read(real_predictions: Path) -> None:
    from spectraldl.io.predictions import read_predictions

    table = read_predictions(real_predictions).set_index("source")
    for f in bundled_files():
        if not f.label:
            continue
        row = table.loc[str(f.path)]
        expected = measure_halpha(read_spectrum(f.path))
        assert row["profile_type"] == expected.profile_type
        assert row["halpha_ew_aa"] == pytest.approx(expected.halpha_ew_aa, rel=1e-6)
        assert row["halpha_flag"] == expected.halpha_flag


def field_unit(vot: object, name: str) -> object:
    return next(f.unit for f in vot.fields if f.name == name)  # type: ignore[attr-defined]


def test_candidates_select_on_ew_and_profile_type(real_predictions: Path, tmp_path: Path) -> None:
    from astropy.io.votable import parse_single_table
    from astropy.table import Table
    from click.testing import CliRunner

    from spectraldl.cli import main

    base = ["candidates", str(real_predictions), "--min-prob", "0", "--include-flagged"]
    base += ["--classes", "emission,absorption,double-peak"]
    fits_out, vot_out = tmp_path / "c.fits", tmp_path / "c.vot"
    args = [*base, "--min-ew", "10", "-o", str(fits_out), "-o", str(vot_out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    table = Table.read(fits_out)
    assert len(table) >= 4  # gamma Cas (twice), the LAMOST emission stars, ub240016, ...
    assert (np.asarray(table["halpha_ew_aa"]) <= -10.0).all()
    assert str(table["halpha_ew_aa"].unit) == "Angstrom"
    assert str(table["halpha_fwhm_kms"].unit) == "km / s"
    from astropy.io import fits

    header = fits.getheader(fits_out, 1)
    ucds = {header[f"TTYPE{i}"]: header.get(f"TUCD{i}") for i in range(1, header["TFIELDS"] + 1)}
    assert ucds["halpha_ew_aa"] == "spect.line.eqWidth;em.line.Halpha"
    assert ucds["profile_type"] == "meta.code.class;em.line.Halpha"
    vot = parse_single_table(str(vot_out))  # VOUnit: Angstrom written as 0.1nm
    assert field_unit(vot, "halpha_ew_aa").to("Angstrom") == pytest.approx(1.0)
    field = {f.name: f for f in vot.fields}
    assert field["halpha_ew_aa"].ucd == "spect.line.eqWidth;em.line.Halpha"
    assert str(field["halpha_peak_sep_kms"].unit) == "km / s"
    assert len(vot.array) == len(table)

    doubles = CliRunner().invoke(
        main, [*base, "--profile-type", "double-peak", "-o", str(fits_out)]
    )
    assert doubles.exit_code == 0, doubles.output
    picked = Table.read(fits_out)
    assert len(picked) >= 1 and set(picked["profile_type"]) == {"double-peak"}
    assert (np.asarray(picked["halpha_peak_sep_kms"]) > 0).all()

    bad = CliRunner().invoke(main, [*base, "--profile-type", "wobbly"])
    assert bad.exit_code != 0 and "profile type wobbly is unknown" in bad.output


def test_a_table_written_before_measurements_reads_as_unmeasurable(
    real_predictions: Path, tmp_path: Path
) -> None:
    from spectraldl.catalogue.candidates import CandidatesError, Selection, find_candidates
    from spectraldl.io.predictions import (
        MEASUREMENT_COLUMNS as COLUMNS,
    )
    from spectraldl.io.predictions import (
        classes_in,
        conform,
        read_predictions,
    )

    old = read_predictions(real_predictions).drop(columns=list(COLUMNS))
    table = conform(old, classes_in(old.columns))
    assert (table["profile_type"] == "unmeasurable").all()
    assert table["halpha_ew_aa"].isna().all()
    with pytest.raises(CandidatesError, match="no halpha_ew_aa column"):
        find_candidates(old, selection=Selection(min_ew_aa=1.0, min_prob=0.0))


def test_datasets_store_measurements_and_older_datasets_stay_readable(tmp_path: Path) -> None:
    import h5py

    from spectraldl.io.dataset import append_rows, create_dataset, read_dataset
    from spectraldl.jobs.ingest import read_and_preprocess
    from spectraldl.prep.preprocess import PreprocessConfig

    config = PreprocessConfig()
    paths = [DATA / "ondrejov-ssap/uk220017.fits", DATA / "ondrejov-ssap/a201504150031.fits"]
    rows, errors = read_and_preprocess(paths, config=config)
    assert not errors
    assert list(rows.meta["profile_type"]) == ["emission", "double-peak"]
    path = tmp_path / "old.h5"
    create_dataset(path, config=config)
    append_rows(path, rows.take(slice(0, 1)))
    with h5py.File(path, "r+") as h5:  # as written before the measurement columns existed
        for name in MEASUREMENT_COLUMNS:
            del h5["meta"][name]
    old = read_dataset(path)
    assert old.meta["profile_type"][0] == "unmeasurable"
    assert math.isnan(old.meta["halpha_ew_aa"][0])
    append_rows(path, rows.take(slice(1, 2)))  # appending to it adds the columns
    both = read_dataset(path)
    assert list(both.meta["profile_type"]) == ["unmeasurable", "double-peak"]
    assert both.meta["halpha_ew_aa"][1] == pytest.approx(rows.meta["halpha_ew_aa"][1])
    assert both.meta["halpha_flag"][0] == "not measured"


# --- the physics baseline beside the network ---------------------------------------------------


def test_evaluate_reports_the_physics_baseline_on_real_labelled_spectra(
    real_predictions: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from spectraldl.cli import main
    from spectraldl.io.bundled import real_labels_csv
    from spectraldl.io.dataset import append_rows, create_dataset
    from spectraldl.io.labels import CLASSES, read_labels
    from spectraldl.jobs.ingest import read_and_preprocess
    from spectraldl.ml.evaluation import evaluate_model, physics_baseline
    from spectraldl.ml.modelcard import load_model

    model_dir = real_predictions.parent / "model"
    model = load_model(model_dir, device="cpu")
    files = [f for f in bundled_files() if f.label]
    rows, errors = read_and_preprocess(
        [f.path for f in files], config=model.config, labels=read_labels(real_labels_csv())
    )
    assert not errors and (rows.labels >= 0).all()
    dataset = tmp_path / "real.h5"
    create_dataset(dataset, config=model.config)
    append_rows(dataset, rows)
    result = evaluate_model(model, [dataset], rows="real")
    part = result["physics_baseline"]
    assert part["not_measured"] == 0 and part["baseline"]["n"] == result["n"] == len(files)
    predicted = physics_baseline(
        rows.meta["profile_type"], rows.meta["halpha_ew_aa"], classes=model.classes
    )
    truth = [model.classes.index(CLASSES[c]) for c in rows.labels]
    assert part["baseline"]["accuracy"] == pytest.approx(np.mean(predicted == truth))
    assert part["baseline"]["accuracy"] >= 0.8  # the bundled stars' lines are clear
    assert part["network"]["accuracy"] == pytest.approx(result["accuracy"])
    shown = CliRunner().invoke(main, ["evaluate", str(model_dir), str(dataset), "--rows", "real"])
    assert shown.exit_code == 0, shown.output
    assert "physics baseline" in shown.output and "baseline, real" in shown.output
    assert "not selected by --rows real," in shown.output


def test_physics_baseline_rule() -> None:
    from spectraldl.ml.evaluation import physics_baseline

    classes = ("emission", "absorption", "double-peak")
    types = ["emission", "double-peak-in-absorption", "emission-in-absorption"]
    types += ["emission-in-absorption", "p-cygni", "absorption", "unmeasurable"]
    ew = [-5.0, 1.0, -0.5, 2.0, -1.0, 3.0, float("nan")]
    assert list(physics_baseline(types, ew, classes=classes)) == [0, 2, 0, 1, 0, 1, 1]
    assert physics_baseline(["double-peak"], [-3.0], classes=("emission", "absorption"))[0] == 0
