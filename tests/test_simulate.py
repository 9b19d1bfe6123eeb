"""spectraldl.simulate in memory: physics, populations, classes and defects at their rates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits

from spectraldl.io.archives import read_spectrum
from spectraldl.io.bundled import bundled_files
from spectraldl.io.labels import CLASSES
from spectraldl.prep.measure import equivalent_width_aa, line_sigma_ratio
from spectraldl.prep.preprocess import HALPHA_VACUUM_AA, PreprocessConfig
from spectraldl.simulate import (
    LAMOST_MIX,
    ONDREJOV_MIX,
    MixError,
    Population,
    parse_mix,
    physics,
    simulate_spectra,
    simulate_vectors,
)
from spectraldl.simulate import fitsbytes as fb
from spectraldl.simulate import lamost as lamost_sim
from spectraldl.simulate.halpha import LineParams, line_addition
from spectraldl.simulate.physics import VELOCITY_GRID_KMS, VELOCITY_STEP_KMS
from spectraldl.simulate.population import class_of
from spectraldl.simulate.templates import load_templates, subclass_teff, template_weights


def within(count: int, n: int, p: float) -> bool:
    """A binomial count within 4 sigma (+1) of its expectation."""
    return abs(count - n * p) <= 4.0 * math.sqrt(n * p * (1.0 - p)) + 1.0


# --- mixes and populations ---------------------------------------------------------------


def test_parse_mix_normalises_and_names_classes() -> None:
    mix = parse_mix("emission=2, absorption=2,double_peak=1", archive="ondrejov")
    assert mix == pytest.approx({"emission": 0.4, "absorption": 0.4, "double-peak": 0.2})
    assert parse_mix({"noise": 1}, archive="lamost") == {"noise": 1.0}
    assert parse_mix(None, archive="ondrejov") == ONDREJOV_MIX
    assert parse_mix(None, archive="lamost") == LAMOST_MIX


@pytest.mark.parametrize(
    "bad",
    ["emission=x", "emission", "bogus=1", "unknown=1", "emission=-1", "emission=0"],
)
def test_parse_mix_refuses_bad_input(bad: str) -> None:
    with pytest.raises(MixError):
        parse_mix(bad, archive="lamost")


def test_classes_follow_the_mix_within_a_file_or_two() -> None:
    mix = parse_mix("emission=0.40,absorption=0.46,double-peak=0.11,noise=0.03", archive="ondrejov")
    labels = [class_of(i, seed=5, mix=mix) for i in range(2000)]
    for name, fraction in mix.items():
        assert abs(labels.count(name) - 2000 * fraction) <= 3, name
    # Every prefix too (a low-discrepancy sequence, not luck).
    first = labels[:300]
    for name, fraction in mix.items():
        assert abs(first.count(name) - 300 * fraction) <= 3, name


# --- templates ---------------------------------------------------------------------------


def test_templates_are_absorption_stars_of_every_class() -> None:
    templates = load_templates()
    assert len(templates) > 800
    for letter in "BAFGKM":
        assert templates.of_class(letter).size >= 20, letter
    # No H-alpha emission left among the templates: the core stays below its pseudo-continuum
    # (cool stars' molecular bands allow a few per cent).
    wave = templates.wave_air
    core = np.abs(wave - 6562.8) < 4.0
    side = (np.abs(wave - 6540.0) < 5.0) | (np.abs(wave - 6585.0) < 5.0)
    ratio = templates.flux[:, core].max(axis=1) / np.median(templates.flux[:, side], axis=1)
    assert ratio.max() < 1.10
    hot = templates.teff > 7000
    assert ratio[hot].max() <= 1.0
    for archive in ("lamost", "ondrejov"):
        weights = template_weights(templates, archive)
        for letter in np.unique(templates.spclass):
            assert weights[templates.spclass == letter].sum() == pytest.approx(1.0)


def test_subclass_teff_scale() -> None:
    assert subclass_teff("A0") == pytest.approx(10000.0)
    assert 7400 < subclass_teff("A5V") < 10000
    assert subclass_teff("K5") < subclass_teff("K0")
    assert subclass_teff("G2") > subclass_teff("K0")
    assert math.isnan(subclass_teff("Non"))
    assert math.isnan(subclass_teff(""))


# --- line physics ------------------------------------------------------------------------


def test_disc_profile_is_double_peaked_with_the_requested_separation_and_vr() -> None:
    v = VELOCITY_GRID_KMS
    for separation, vr in ((150.0, 1.0), (400.0, 1.4), (600.0, 0.7)):
        profile = physics.disc_profile_kms(
            v,
            peak_separation_kms=separation,
            radius_ratio=15.0,
            emissivity_index=2.5,
            local_broadening_kms=15.0,
            vr_ratio=vr,
        )
        assert profile.sum() * VELOCITY_STEP_KMS == pytest.approx(1.0, rel=1e-6)
        blue = v < 0
        violet_peak = v[blue][np.argmax(profile[blue])]
        red_peak = v[~blue][np.argmax(profile[~blue])]
        assert red_peak - violet_peak == pytest.approx(separation, rel=0.15)
        centre = profile[np.abs(v) < 10].mean()
        assert centre < 0.9 * min(profile[blue].max(), profile[~blue].max())
        ratio = profile[blue].max() / profile[~blue].max()
        assert ratio == pytest.approx(vr, rel=0.15)


def test_emission_reaches_the_requested_net_height_over_the_photosphere() -> None:
    v = VELOCITY_GRID_KMS
    photosphere = 1.0 - 0.4 * np.exp(-0.5 * (v / 200.0) ** 2)
    for height in (0.1, 1.0, 5.0):
        line = LineParams(kind="single", net_height=height, fwhm_kms=250.0, lorentz_fraction=0.2)
        addition, ew = line_addition(line, photosphere, instrument_sigma_kms=70.0)
        assert (photosphere + addition).max() - photosphere.max() == pytest.approx(height, rel=1e-3)
        assert ew > 0
    fill = LineParams(kind="fill", net_height=0.5, fwhm_kms=150.0)
    addition, _ = line_addition(fill, photosphere, instrument_sigma_kms=70.0)
    assert (photosphere + addition).max() <= 1.0 + 1e-9
    assert (photosphere + addition).min() > photosphere.min()


def test_rotation_kernel_and_extinction_law() -> None:
    taps = np.arange(-300.0, 301.0, 1.0)
    kernel = physics.rotation_kernel_kms(taps, vsini_kms=250.0)
    assert kernel.sum() == pytest.approx(1.0, rel=1e-3)
    assert kernel[np.abs(taps) > 250.0].max() == 0.0
    # CCM: A(V) = R_V E(B-V) at V (1/λ = 1.82 µm^-1); redder light is less extinguished.
    a_v = physics.ccm_extinction_mag(np.array([1e4 / 1.82]), ebv=1.0)[0]
    assert a_v == pytest.approx(3.1, rel=1e-3)
    a = physics.ccm_extinction_mag(np.array([4400.0, 6563.0, 9000.0]), ebv=0.5)
    assert a[0] > a[1] > a[2] > 0


# --- spectra -----------------------------------------------------------------------------


def test_lamost_spectra_defects_and_pipeline_traces_at_their_rates() -> None:
    n = 500
    sim = simulate_spectra(n, archive="lamost", seed=11, release="dr1")
    truth = sim.truth
    labels = [t["label"] for t in truth]
    for name, fraction in LAMOST_MIX.items():
        assert abs(labels.count(name) - n * fraction) <= 3, name
    count = sum(t["defect_cosmic_rays"] > 0 for t in truth)
    assert within(count, n, 0.02)
    count = sum(t["defect_masked_pixels"] > 0 for t in truth)
    assert within(count, n, 0.02)
    count = sum(t["defect_ivar_zero_scattered"] > 0 for t in truth)
    assert within(count, n, 0.08)
    count = sum(t["defect_red_end_lost_aa"] > 0 for t in truth)
    assert within(count, n, 0.005)
    assert all(t["defect_sky_residual"] != 0 for t in truth)
    # The spectra themselves carry what truth says.
    for spectrum, t in zip(sim.spectra, truth, strict=True):
        window = (spectrum.wave_aa > 6519.0) & (spectrum.wave_aa < 6732.0)
        assert int((spectrum.ivar[window] == 0).sum()) == t["window_ivar_zero"]
        if t["defect_masked_pixels"]:
            assert spectrum.mask[window].sum() >= t["defect_masked_pixels"]
        assert spectrum.flux[-1] == 0.0 and spectrum.ivar[-1] == 0.0
    snr_header = np.array([s.meta.snr for s in sim.spectra])
    assert snr_header.max() <= 99.0  # DR1 caps SN_R at 99
    ordinary = [s for s, t in zip(sim.spectra, truth, strict=True) if t["label"] == "absorption"]
    ew = [equivalent_width_aa(s.wave_aa, s.flux, line_aa=HALPHA_VACUUM_AA) for s in ordinary]
    assert np.nanmedian(ew) > 1.0  # ordinary F-G-K stars: H-alpha in absorption


def test_line_sigma_ratio_reads_the_noise_a_line_adds() -> None:
    wave = 6500.0 + 1.5 * np.arange(100)
    ivar = np.full(100, 4.0)
    ivar[49:52] = 4.0 / 9.0  # sigma three times the continuum's at 6575 Å
    assert line_sigma_ratio(wave, ivar, line_aa=6575.0) == pytest.approx(3.0)
    assert line_sigma_ratio(wave, ivar, line_aa=6620.0) == pytest.approx(1.0)
    assert math.isnan(line_sigma_ratio(wave, ivar, line_aa=6510.0))  # too near the end
    ivar[50] = 0.0
    assert math.isnan(line_sigma_ratio(wave, ivar, line_aa=6575.0))  # the line's pixel has no ivar


def _ivar_sigma_ratio(spectra: list, centre_aa: float) -> float:
    """Median over spectra of `line_sigma_ratio` at one line."""
    ratios = [line_sigma_ratio(s.wave_aa, s.ivar, line_aa=centre_aa) for s in spectra]
    return float(np.nanmedian(ratios))


def test_sky_lines_are_summed_as_line_by_line_addition_sums_them() -> None:
    # The sky is one bincount over the lines' pixels; overlapping lines must add in the
    # order and to the bits of adding each line's pixels in turn.
    g = lamost_sim._grid_info("dr1")
    for sigma_kms in (60.0, 95.0, 140.0):
        expected = np.zeros(g.wave.size)
        for line, pixels in enumerate(g.sky_pixels):
            sigma_aa = lamost_sim.SKY_LINES_VAC_AA[line] * sigma_kms / lamost_sim.C_KMS
            shape = np.exp(
                -0.5 * ((g.wave[pixels] - lamost_sim.SKY_LINES_VAC_AA[line]) / sigma_aa) ** 2
            )
            np.add.at(expected, pixels, lamost_sim.SKY_LINE_STRENGTH[line] * shape)
        assert np.array_equal(lamost_sim._sky_lines(g, sigma_kms), expected)


def test_lamost_ivar_at_sky_lines_and_near_halpha_follows_the_real_dev_files() -> None:
    real = [
        s
        for s in (read_spectrum(item.path) for item in bundled_files(archive="lamost", role="dev"))
        if s.meta.form.startswith("lrs")
    ]
    population = Population.default("lamost", {"absorption": 1.0})
    synthetic = simulate_spectra(120, archive="lamost", seed=5, population=population).spectra
    # Faint OH lines near H-alpha, the pipeline's inflated ivar at 6555-6571 Å and its
    # lowered ivar at 6579 Å, [O I] 6300: each as the real files have it.
    for centre in (6302.04, 6534.84, 6555.43, 6564.61, 6570.59, 6579.10, 6606.10, 6629.45):
        r, s = _ivar_sigma_ratio(real, centre), _ivar_sigma_ratio(synthetic, centre)
        assert abs(s - r) < 0.25 * r, (centre, r, s)


def test_strong_lamost_emission_gets_zero_ivar_at_its_peak_not_a_mask() -> None:
    sim = simulate_spectra(40, archive="lamost", seed=3, mix={"emission": 1.0})
    hits = 0
    for spectrum, t in zip(sim.spectra, sim.truth, strict=True):
        if t["defect_ivar_zero_peak"]:
            hits += 1
            if (
                t["defect_ivar_zero_scattered"]
                or t["defect_masked_pixels"]
                or t["defect_red_end_lost_aa"]
            ):
                continue
            window = (spectrum.wave_aa > 6519) & (spectrum.wave_aa < 6732)
            zero = window & (spectrum.ivar == 0)
            assert zero.sum() == t["defect_ivar_zero_peak"]
            assert not spectrum.mask[zero].any()
            assert spectrum.flux[zero].min() > np.median(spectrum.flux[window])
            centre = HALPHA_VACUUM_AA * (1 + t["rv_kms"] / 299792.458)
            assert np.abs(spectrum.wave_aa[zero] - centre).min() < 15.0
    strong = sum(t["line_net_height"] >= 0.3 for t in sim.truth)
    assert 0 < hits <= strong
    assert within(hits, strong, 0.7)


def test_classes_are_what_their_labels_say() -> None:
    mix = {"emission": 0.5, "absorption": 0.5}
    sim = simulate_spectra(80, archive="ondrejov", seed=4, mix=mix)
    for spectrum, t in zip(sim.spectra, sim.truth, strict=True):
        window = np.abs(spectrum.wave_aa - 6562.8 * (1 + t["rv_kms"] / 299792.458)) < 12.0
        near = np.abs(spectrum.wave_aa - 6650.0) < 20.0
        peak = spectrum.flux[window].max() / np.median(spectrum.flux[near])
        if t["label"] == "emission":
            assert t["line_kind"] == "single"
            assert peak > 1.0 + 0.5 * t["line_net_height"] - 3.0 / t["snr"]
        else:
            assert t["line_kind"] in ("none", "fill")
            assert t["halpha_ew_aa"] > 0
    double = simulate_spectra(30, archive="ondrejov", seed=4, mix={"double-peak": 1})
    assert {t["line_kind"] for t in double.truth} == {"disc"}
    assert all(100 <= t["line_peak_separation_kms"] <= 600 for t in double.truth)
    assert all(t["spclass"] in "OBAF" for t in double.truth)
    noise = simulate_spectra(10, archive="lamost", seed=4, mix={"noise": 1})
    assert all(t["snr"] < 4.5 for t in noise.truth)


def test_ondrejov_population_is_mostly_b_stars() -> None:
    sim = simulate_spectra(200, archive="ondrejov", seed=8)
    classes = [t["spclass"] for t in sim.truth if t["label"] in ("emission", "double-peak")]
    assert classes.count("B") > 0.6 * len(classes)
    lamost = simulate_spectra(200, archive="lamost", seed=8, mix={"absorption": 1})
    classes = [t["spclass"] for t in lamost.truth]
    assert sum(c in "FGK" for c in classes) > 0.6 * len(classes)


def test_population_with_real_snr_and_teff_values() -> None:
    population = Population.default(
        "lamost", {"absorption": 1}, snr_values=[20.0], teff_values=[4400.0]
    )
    sim = simulate_spectra(20, archive="lamost", seed=1, population=population)
    assert all(18.0 <= t["snr"] <= 22.0 for t in sim.truth)
    assert all(3800 < t["teff"] < 5100 for t in sim.truth)
    with pytest.raises(ValueError, match="population is for lamost"):
        simulate_spectra(2, archive="ondrejov", population=population)


def test_simulate_vectors_match_preprocessed_spectra() -> None:
    vectors = simulate_vectors(30, archive="ondrejov", seed=2)
    assert vectors.X.shape == (30, 140) and vectors.X.dtype == np.float32
    assert not vectors.rejected
    assert [CLASSES[c] for c in vectors.labels] == [t["label"] for t in vectors.truth]
    np.testing.assert_allclose(vectors.X.mean(axis=1), 0.0, atol=1e-5)
    config = PreprocessConfig(blur_sigma_px={"ondrejov": 3.0})
    other = simulate_vectors(5, archive="ondrejov", seed=2, config=config)
    assert other.config == config
    assert not np.allclose(other.X, vectors.X[:5])


def test_same_star_in_every_layout() -> None:
    keys = ("label", "template", "rv_kms", "snr", "ebv", "line_kind", "line_net_height")
    runs = [simulate_spectra(4, archive="lamost", seed=9, release=r).truth for r in ("dr1", "dr8")]
    assert [[t[k] for k in keys] for t in runs[0]] == [[t[k] for k in keys] for t in runs[1]]
    runs = [simulate_spectra(4, archive="ondrejov", seed=9, form=f).truth for f in ("ssap", "raw")]
    assert [[t[k] for k in keys] for t in runs[0]] == [[t[k] for k in keys] for t in runs[1]]
    ssap, raw = (
        simulate_spectra(2, archive="ondrejov", seed=9, form=f).spectra for f in ("ssap", "raw")
    )
    for a, b in zip(ssap, raw, strict=True):
        # The SSAP table is the native spectrum cut to 6282-6733 Å: same wavelengths.
        assert np.isin(a.wave_aa, b.wave_aa).all()


def test_cards_round_trip_through_astropy() -> None:
    cards = [
        fb.card("STR", "it's here", "a quote inside"),
        fb.card("SHORT", "ab"),
        fb.card("INT", 42, "an int"),
        fb.card("FLT", 6562.8),
        fb.card("SMALL", 1e-10),
        fb.card("BOOL", True),
        fb.card("RAW", fb.Raw("3.56820")),
        fb.card("COMMENT", comment="--------FILE INFORMATION"),
        fb.card(""),
    ]
    data = fb.image_hdu(cards, np.arange(6, dtype=">f4").reshape(2, 3))
    assert len(data) % fb.BLOCK == 0
    import io

    with fits.open(io.BytesIO(data)) as hdul:
        hdul.verify("exception")
        header = hdul[0].header
        assert header["STR"] == "it's here"
        assert header["SHORT"] == "ab"
        assert header["INT"] == 42
        assert header["FLT"] == 6562.8
        assert header["SMALL"] == 1e-10
        assert header["BOOL"] is True
        assert header["RAW"] == 3.5682
        np.testing.assert_array_equal(hdul[0].data, np.arange(6).reshape(2, 3))
    with pytest.raises(ValueError):
        fb.card("TOOLONGKEY", 1)
    with pytest.raises(ValueError):
        fb.card("NAN", float("nan"))


def _plate_spread(population: Population, plates: int, per_plate: int) -> tuple[float, float]:
    """Median distance between plates' mean vectors, and between halves of one plate."""
    vectors = simulate_vectors(plates * per_plate, archive="lamost", seed=3, population=population)
    plate = np.array([int(row["index"]) // per_plate for row in vectors.truth])
    means = np.array([vectors.X[plate == p].mean(0) for p in range(plates)])
    between = np.linalg.norm(means[:, None] - means[None], axis=-1)[np.triu_indices(plates, 1)]
    halves = [
        np.linalg.norm(vectors.X[plate == p][::2].mean(0) - vectors.X[plate == p][1::2].mean(0))
        for p in range(plates)
    ]
    return float(np.median(between)), float(np.median(halves))


def test_plate_systematics_are_shared_within_a_plate_and_differ_between_plates() -> None:
    kwargs = {"fibres_per_plate": 40}
    off = Population.default("lamost", {"absorption": 1.0}, **kwargs)
    on = Population.default("lamost", {"absorption": 1.0}, plate_systematics=True, **kwargs)
    # Without plate systematics plates are random halves of one population: means of 40
    # spectra are closer to each other than means of 20; with them, plates stand apart.
    between, halves = _plate_spread(off, 5, 40)
    assert between < 0.85 * halves
    between, halves = _plate_spread(on, 5, 40)
    assert between > 1.1 * halves
    sim = simulate_spectra(80, archive="lamost", seed=3, population=on)
    shifts = {row["plate"]: row["plate_sky_shift_aa"] for row in sim.truth}
    assert sorted(shifts) == [0, 1] and shifts[0] != shifts[1]
    assert all(row["plate_sky_shift_aa"] == shifts[row["plate"]] for row in sim.truth)
    assert len({s.id.split("-")[2].split("_")[0] for s in sim.spectra}) == 2  # two plan ids
    default = simulate_spectra(3, archive="lamost", seed=3, mix={"absorption": 1.0})
    assert "plate" not in default.truth[0]  # off by default: the earlier spectra, unchanged
    with pytest.raises(ValueError, match="fibres_per_plate"):
        Population.default("lamost", fibres_per_plate=0)
