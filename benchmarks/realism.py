"""How real do synthetic LAMOST spectra look? Measured against real ones after preprocessing.

Compares synthetic LAMOST-like absorption spectra with the bundled real LAMOST
low-resolution files, separately for the ``dev`` files (the only ones the
simulator was tuned against) and the ``holdout`` files (never tuned against):

* **discriminator**: a random forest trained to tell real from synthetic
  140-point vectors; stratified 5-fold cross-validated ROC AUC, repeated
  (0.5 = indistinguishable; goal <= 0.7);
* **EW(H-alpha)** per spectral class, real vs synthetic (Å, native spectra);
* **noise per pixel vs S/N**: high-frequency scatter of the preprocessed
  vector, binned by SN_R;
* **continuum slope** across the window (preprocessed, H-alpha masked);
* **ordinary stars stay ordinary**: a classifier trained on synthetic
  LAMOST-like spectra of every class, applied to the real ordinary stars:
  the share it calls emission or double-peak;
* the same for a **naive baseline** set (MILES at R 1800, Gaussian emission,
  white noise: what the thesis' feasibility test used), measured in the same run;
* **Ondřejov resolution**: the real Ondřejov spectra degraded to MILES' 2.5 Å
  FWHM, preprocessed, against the originals (what the templates' lower
  resolution costs after the sigma-7 blur);
* **sky lines in ivar**: sigma at each night-sky line over sigma of the nearby
  continuum, real vs synthetic;
* **plates as a yardstick**: the same discriminator between real F-G-K stars
  of the dev plate, other fibres of that plate and other plates (real vs real),
  beside synthetic vs each of them at equal sizes: how far apart real plates
  are tells what a plate-independent simulator can reach; and the same pairs
  among synthetic plates, with and without plate systematics
  (`Population.plate_systematics`): synthetic plates should differ as real
  ones do.

The synthetic sets match each real set's spectral classes (LAMOST SUBCLASS)
and SN_R values, so that like is compared with like. Writes a PNG of real and
synthetic spectra side by side (``--out``, default benchmarks/out/).

Run: ``.venv/bin/python benchmarks/realism.py [--per-real 8] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

from spectraldl.core.errors import SpectrumError
from spectraldl.core.spectrum import Spectrum, SpectrumMeta
from spectraldl.io.archives import read_spectrum
from spectraldl.io.bundled import bundled_files
from spectraldl.prep.measure import equivalent_width_aa, line_sigma_ratio
from spectraldl.prep.preprocess import HALPHA_VACUUM_AA, PreprocessConfig, preprocess
from spectraldl.simulate import Population, simulate_spectra
from spectraldl.simulate.lamost import SKY_LINES_VAC_AA
from spectraldl.simulate.templates import MILES_FWHM_AA, load_templates, subclass_teff

CLASS_LETTERS = "OBAFGKM"
HALPHA_MASK_AA = 20.0


@dataclass
class Sample:
    """Spectra with their preprocessed vectors and what is known of them."""

    name: str
    spectra: list[Spectrum]
    X: np.ndarray
    letters: list[str]
    snr: np.ndarray
    labels: list[str]


def machine() -> dict[str, object]:
    """CPU model and core count (benchmarks name their machine)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def letter_of(spectrum: Spectrum) -> str:
    """Spectral class letter from the LAMOST SUBCLASS (``?`` when the pipeline gave none)."""
    sub = str(spectrum.meta.extra.get("subclass", "")).strip()
    return sub[0] if sub and sub[0] in CLASS_LETTERS else "?"


def make_sample(
    name: str, spectra: list[Spectrum], labels: list[str], config: PreprocessConfig
) -> Sample:
    """Preprocess ``spectra``; those preprocessing refuses are left out (and counted)."""
    keep, xs, kept_labels = [], [], []
    for spectrum, label in zip(spectra, labels, strict=True):
        try:
            xs.append(preprocess(spectrum, config).x)
        except SpectrumError:
            continue
        keep.append(spectrum)
        kept_labels.append(label)
    return Sample(
        name=name,
        spectra=keep,
        X=np.array(xs),
        letters=[letter_of(s) for s in keep],
        snr=np.array([s.meta.snr for s in keep]),
        labels=kept_labels,
    )


def real_sample(role: str, config: PreprocessConfig) -> Sample:
    """The bundled real LAMOST low-resolution spectra of one role (MRS left out)."""
    spectra = []
    for item in bundled_files(archive="lamost", role=role):
        spectrum = read_spectrum(item.path)
        if spectrum.meta.form.startswith("lrs"):
            spectra.append(spectrum)
    return make_sample(f"real-{role}", spectra, ["absorption"] * len(spectra), config)


def matched_population(real: Sample, mix: dict[str, float] | None = None) -> Population:
    """A LAMOST population with the real sample's subclasses (as Teff) and SN_R values."""
    subclasses = [str(s.meta.extra.get("subclass", "")) for s in real.spectra]
    teff = [t for t in (subclass_teff(sub) for sub in subclasses) if math.isfinite(t)]
    snr = [float(s) for s in real.snr if math.isfinite(s)]
    return Population.default(
        "lamost", mix or {"absorption": 1.0}, snr_values=snr, teff_values=teff
    )


def synthetic_sample(real: Sample, n: int, seed: int, config: PreprocessConfig) -> Sample:
    """Synthetic absorption spectra matched to ``real`` (classes, S/N), DR1 layout."""
    sim = simulate_spectra(n, archive="lamost", seed=seed, population=matched_population(real))
    return make_sample(f"synthetic-vs-{real.name}", sim.spectra, sim.labels, config)


# --- the naive baseline ------------------------------------------------------------------


def naive_spectra(
    real: Sample, n: int, seed: int, *, mix: dict[str, float]
) -> tuple[list[Spectrum], list[str]]:
    """The thesis' feasibility set: MILES at R 1800, Gaussian H-alpha emission, white noise.

    Spectral classes and S/N as the real sample; no velocity, reddening, sky,
    masks, correlated noise or calibration slopes.
    """
    rng = np.random.default_rng(seed)
    templates = load_templates()
    counts = Counter(letter for letter in real.letters if letter != "?")
    letters = list(counts)
    weights = np.array([counts[c] for c in letters], dtype=float)
    classes = list(mix)
    probs = np.array([mix[c] for c in classes])
    wave = 10.0 ** (3.5682 + 1e-4 * np.arange(3904))
    window = (wave > 6200) & (wave < 6850)
    fwhm = math.sqrt((HALPHA_VACUUM_AA / 1800.0) ** 2 - MILES_FWHM_AA**2)
    spectra, labels = [], []
    for i in range(n):
        letter = letters[rng.choice(len(letters), p=weights / weights.sum())]
        k = int(rng.choice(templates.of_class(letter)))
        flux = gaussian_filter1d(templates.flux[k], fwhm / 2.3548 / 0.9)
        model = np.interp(wave[window], templates.wave_vac, flux)
        label = classes[rng.choice(len(classes), p=probs / probs.sum())]
        if label in ("emission", "double-peak"):
            ew = math.exp(rng.uniform(math.log(1.0), math.log(40.0)))
            sigma = math.exp(rng.uniform(math.log(2.0), math.log(6.0)))
            centres = [0.0] if label == "emission" else [-1.0, 1.0]
            for offset in centres:
                centre = HALPHA_VACUUM_AA + offset * rng.uniform(2.5, 6.0)
                model = model + model.mean() * ew / len(centres) * np.exp(
                    -0.5 * ((wave[window] - centre) / sigma) ** 2
                ) / (sigma * math.sqrt(2 * math.pi))
        snr = float(real.snr[rng.integers(real.snr.size)])
        noisy = model + rng.normal(0.0, 1.0, model.size) * model.mean() / max(snr, 1.0)
        meta = SpectrumMeta(
            id=f"naive-{i}",
            archive="lamost",
            form="lrs-image-dr1",
            snr=snr,
            resolving_power=1800.0,
            extra={"subclass": letter},
        )
        spectra.append(Spectrum(wave_aa=wave[window], flux=noisy, medium="vacuum", meta=meta))
        labels.append(label)
    return spectra, labels


# --- measurements ------------------------------------------------------------------------


def discriminator_auc(
    real: np.ndarray, synthetic: np.ndarray, *, repeats: int, seed: int
) -> tuple[float, float]:
    """Mean and std of the cross-validated ROC AUC of a random forest real-vs-synthetic."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    X = np.vstack([real, synthetic])
    y = np.r_[np.ones(len(real)), np.zeros(len(synthetic))]
    scores = []
    for r in range(repeats):
        folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed + r)
        forest = RandomForestClassifier(n_estimators=200, random_state=seed + r, n_jobs=1)
        scores.extend(cross_val_score(forest, X, y, cv=folds, scoring="roc_auc"))
    return float(np.mean(scores)), float(np.std(scores))


def plate_of(spectrum: Spectrum) -> str:
    """The LAMOST plate of a file (``spec-55862-B6212_sp06-003`` -> ``B6212``)."""
    name = str(spectrum.meta.id)
    return name.split("-", 2)[-1].rsplit("_sp", 1)[0]


def subset(sample: Sample, keep: np.ndarray, name: str) -> Sample:
    """The spectra of ``sample`` where ``keep`` is true."""
    picked = np.flatnonzero(keep)
    return Sample(
        name=name,
        spectra=[sample.spectra[i] for i in picked],
        X=sample.X[picked],
        letters=[sample.letters[i] for i in picked],
        snr=sample.snr[picked],
        labels=[sample.labels[i] for i in picked],
    )


def plate_yardstick(
    dev: Sample, holdout: Sample, config: PreprocessConfig, *, seed: int, repeats: int
) -> list[dict[str, object]]:
    """Discriminator AUC between real sets of F-G-K stars, and synthetic vs each at equal sizes.

    The sets: the dev fibres (plate B6212), the holdout's fibres of that plate,
    and the holdout's stars of other plates and releases. Synthetic spectra are
    matched to each set (classes, S/N) and subsampled to the size of the real
    set they are compared with, five times.
    """
    fgk = set("FGK")
    dev_plate = Counter(plate_of(s) for s in dev.spectra).most_common(1)[0][0]
    hold_fgk = np.array([c in fgk for c in holdout.letters])
    same = np.array([plate_of(s) == dev_plate for s in holdout.spectra])
    sets = {
        "dev": subset(dev, np.array([c in fgk for c in dev.letters]), "dev"),
        "same plate": subset(holdout, hold_fgk & same, "same plate"),
        "other plates": subset(holdout, hold_fgk & ~same, "other plates"),
    }
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    for a, b in (("dev", "same plate"), ("dev", "other plates"), ("same plate", "other plates")):
        auc, sd = discriminator_auc(sets[a].X, sets[b].X, repeats=repeats * 2, seed=seed)
        rows.append(
            {
                "pair": f"real {a} vs real {b}",
                "n": [len(sets[a].X), len(sets[b].X)],
                "auc": auc,
                "auc_sd": sd,
            }
        )
    for k, (name, real) in enumerate(sets.items()):
        synth = synthetic_sample(real, 8 * len(real.X), seed + 50 + k, config)
        synth = subset(synth, np.array([c in fgk for c in synth.letters]), "synthetic")
        size = min(len(real.X), len(synth.X))
        aucs = [
            discriminator_auc(
                real.X,
                synth.X[rng.choice(len(synth.X), size, replace=False)],
                repeats=repeats,
                seed=seed + i,
            )[0]
            for i in range(5)
        ]
        rows.append(
            {
                "pair": f"real {name} vs synthetic",
                "n": [len(real.X), size],
                "auc": float(np.mean(aucs)),
                "auc_sd": float(np.std(aucs)),
            }
        )
    return rows


def sky_line_sigma(sample: Sample, lines_aa: np.ndarray) -> np.ndarray:
    """Median over spectra of `line_sigma_ratio` at each line (spectra without ivar left out)."""
    ratios = [
        [line_sigma_ratio(s.wave_aa, s.ivar, line_aa=float(line)) for line in lines_aa]
        for s in sample.spectra
        if s.ivar is not None
    ]
    return np.nanmedian(np.array(ratios), axis=0)


def grid_aa(config: PreprocessConfig) -> np.ndarray:
    """The preprocessing grid."""
    return np.asarray(config.grid_aa)


def hf_noise(X: np.ndarray) -> np.ndarray:
    """High-frequency scatter per vector: std of x minus x smoothed by a 1.5-pixel Gaussian."""
    smooth = gaussian_filter1d(X, 1.5, axis=1, mode="nearest")
    return (X - smooth)[:, 5:-5].std(axis=1)


def slopes(X: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Least-squares slope of each vector across the window (σ per 100 Å), H-alpha ±20 Å masked."""
    keep = np.abs(grid - HALPHA_VACUUM_AA) > HALPHA_MASK_AA
    x = (grid[keep] - grid[keep].mean()) / 100.0
    y = X[:, keep] - X[:, keep].mean(axis=1, keepdims=True)
    return (y @ x) / float(x @ x)


def ews(sample: Sample) -> np.ndarray:
    """EW(H-alpha) in Å (positive = absorption) of each spectrum, native sampling."""
    out = []
    for s in sample.spectra:
        wave = s.wave_aa
        rv_shift = 1.0 + float(s.meta.extra.get("z", 0.0) or 0.0)
        out.append(equivalent_width_aa(wave, s.flux, line_aa=HALPHA_VACUUM_AA * rv_shift))
    return np.array(out)


def ks_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov p-value (NaNs dropped)."""
    from scipy.stats import ks_2samp

    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 3 or b.size < 3:
        return float("nan")
    return float(ks_2samp(a, b).pvalue)


def false_emission_rate(
    train_X: np.ndarray, train_y: list[str], real_X: np.ndarray, seed: int
) -> float:
    """Share of real ordinary stars a forest trained on ``train`` calls emission or double-peak."""
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(
        n_estimators=300, random_state=seed, n_jobs=1, class_weight="balanced"
    )
    forest.fit(train_X, train_y)
    predicted = forest.predict(real_X)
    return float(np.isin(predicted, ["emission", "double-peak"]).mean())


def ondrejov_resolution_check(config: PreprocessConfig) -> dict[str, float]:
    """Real Ondřejov spectra degraded to 2.5 Å FWHM vs originals, after preprocessing.

    Returns the median and maximum over files of the RMS difference of the
    standardised 140-point vectors, and the same before the sigma-7 blur
    (sigma 0) to show what the blur hides. Measurement only: nothing is tuned to it.
    """
    rms_blur, rms_raw = [], []
    no_blur = PreprocessConfig(blur_sigma_px={"ondrejov": 0.0})
    for item in bundled_files(archive="ondrejov"):
        spectrum = read_spectrum(item.path)
        step = float(np.median(np.diff(spectrum.wave_aa)))
        fwhm = math.sqrt(MILES_FWHM_AA**2 - (6563.0 / 13000.0) ** 2)
        degraded = Spectrum(
            wave_aa=spectrum.wave_aa,
            flux=gaussian_filter1d(spectrum.flux, fwhm / 2.3548 / step, mode="nearest"),
            medium=spectrum.medium,
            meta=spectrum.meta,
        )
        for cfg, sink in ((config, rms_blur), (no_blur, rms_raw)):
            a = preprocess(spectrum, cfg).x
            b = preprocess(degraded, cfg).x
            sink.append(float(np.sqrt(np.mean((a - b) ** 2))))
    return {
        "files": len(rms_blur),
        "rms_after_blur_median": float(np.median(rms_blur)),
        "rms_after_blur_max": float(np.max(rms_blur)),
        "rms_without_blur_median": float(np.median(rms_raw)),
        "rms_without_blur_max": float(np.max(rms_raw)),
    }


def ondrejov_comparison(config: PreprocessConfig, n: int, seed: int) -> dict[str, object]:
    """Synthetic Ondřejov spectra against the bundled real labelled ones (eval: measured only).

    Per class the median EW(H-alpha) (Å, positive = absorption) of the real
    files and of a synthetic set with the thesis' class mix, the median
    high-frequency scatter of the preprocessed vectors, and a discriminator AUC
    (too few real files for a precise value: indicative only).
    """
    real_spectra, real_labels = [], []
    for item in bundled_files(archive="ondrejov"):
        real_spectra.append(read_spectrum(item.path))
        real_labels.append(item.label)
    real = make_sample("real-ondrejov", real_spectra, real_labels, config)
    sim = simulate_spectra(n, archive="ondrejov", seed=seed, form="ssap")
    synth = make_sample("synthetic-ondrejov", sim.spectra, sim.labels, config)

    def ew_of(sample: Sample) -> np.ndarray:
        return np.array(
            [equivalent_width_aa(s.wave_aa, s.flux, line_aa=6562.8) for s in sample.spectra]
        )

    real_ew, syn_ew = ew_of(real), ew_of(synth)
    per_class = {}
    for name in ("emission", "absorption", "double-peak"):
        r = real_ew[[label == name for label in real.labels]]
        s_ = syn_ew[[label == name for label in synth.labels]]
        per_class[name] = {
            "n_real": int(r.size),
            "ew_real": [round(float(v), 2) for v in np.sort(r)],
            "ew_synthetic_quartiles": [round(float(v), 2) for v in np.percentile(s_, [10, 50, 90])],
        }
    auc, auc_sd = discriminator_auc(real.X, synth.X, repeats=3, seed=seed)
    return {
        "n_real": len(real.spectra),
        "n_synthetic": len(synth.spectra),
        "auc": auc,
        "auc_sd": auc_sd,
        "hf_real_median": float(np.median(hf_noise(real.X))),
        "hf_synthetic_median": float(np.median(hf_noise(synth.X))),
        "ew_per_class": per_class,
    }


def figure(pairs: list[tuple[Sample, Sample]], grid: np.ndarray, path: Path) -> None:
    """Real (left) and synthetic (right) preprocessed spectra, matched by class and S/N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    real, synth = pairs[0]
    letters = [c for c in "AFGKM" if c in real.letters][:5]
    fig, axes = plt.subplots(
        len(letters), 2, figsize=(10, 1.9 * len(letters)), sharex=True, squeeze=False
    )
    rng = np.random.default_rng(0)
    for row, letter in enumerate(letters):
        ri = [i for i, c in enumerate(real.letters) if c == letter]
        si = [i for i, c in enumerate(synth.letters) if c == letter]
        for col, (sample, idx) in enumerate(((real, ri), (synth, si))):
            ax = axes[row, col]
            for j in rng.choice(idx, size=min(3, len(idx)), replace=False):
                ax.plot(grid, sample.X[j], lw=0.8, label=f"S/N {sample.snr[j]:.0f}")
            ax.axvline(HALPHA_VACUUM_AA, color="0.7", lw=0.5, zorder=0)
            ax.legend(fontsize=6, loc="lower left", frameon=False)
            ax.set_ylabel(f"{letter} stars", fontsize=8)
            if row == 0:
                ax.set_title(
                    "real LAMOST (dev)" if col == 0 else "synthetic (simulate)", fontsize=10
                )
    for ax in axes[-1]:
        ax.set_xlabel("vacuum wavelength (Å)")
    fig.suptitle("Preprocessed spectra (standardised, 140 px): real vs synthetic", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def noise_figure(samples: list[Sample], path: Path) -> None:
    """High-frequency noise of the preprocessed vectors against SN_R, real and synthetic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for sample, style in zip(samples, ("o", ".", "s", "x"), strict=False):
        axes[0].scatter(
            sample.snr, hf_noise(sample.X), marker=style, s=14, alpha=0.7, label=sample.name
        )
    axes[0].set_xscale("log")
    axes[0].set_xlabel("SN_R")
    axes[0].set_ylabel("HF scatter of x (σ units)")
    axes[0].legend(fontsize=7)
    for sample in samples:
        axes[1].hist(
            ews(sample),
            bins=np.linspace(-2, 12, 29),
            histtype="step",
            density=True,
            label=sample.name,
        )
    axes[1].set_xlabel("EW(H-alpha) Å (absorption > 0)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(
    rows: list[dict],
    summaries: dict,
    ondrejov: dict,
    ondrejov_sets: dict,
    yardstick: list[dict],
    sky: dict[str, list[float]],
) -> None:
    """Print the tables (markdown)."""
    info = machine()
    print(f"# realism of synthetic LAMOST spectra ({info['cpu']}, {info['cores']} cores)")
    print(
        "| set | real | synthetic | AUC (goal <= 0.7) | AUC naive baseline | ratio | "
        "false emission | false emission naive | HF-noise KS p | slope KS p | EW KS p |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [
            r["set"],
            str(r["n_real"]),
            str(r["n_synthetic"]),
            f"{r['auc']:.3f} ± {r['auc_sd']:.3f}",
            f"{r['auc_naive_baseline']:.3f} ± {r['auc_naive_sd']:.3f}",
            f"{r['auc'] / r['auc_naive_baseline']:.2f}",
            f"{r['false_emission_rate']:.3f}",
            f"{r['false_emission_rate_naive']:.3f}",
            f"{r['hf_noise_ks_p']:.2f}",
            f"{r['slope_ks_p']:.2f}",
            f"{r['ew_ks_p']:.2f}",
        ]
        print("| " + " | ".join(cells) + " |")
    for role, summary in summaries.items():
        ew = [
            f"{c} {v['ew_real_median']:.2f} / {v['ew_synthetic_median']:.2f} (n={v['n_real']})"
            for c, v in summary["ew_per_class"].items()
        ]
        print(f"\n{role}: EW(H-alpha) median per class, real / synthetic (Å): " + ", ".join(ew))
        noise = [
            f"{b['snr']}: {b['real_median']:.3f} / {b['synthetic_median']:.3f} (n={b['n_real']})"
            for b in summary["noise_vs_snr"]
        ]
        print(f"{role}: HF noise median per SN_R bin, real / synthetic: " + ", ".join(noise))
    print("\nPlates as a yardstick (F-G-K stars only; same discriminator):")
    print("| pair | n | AUC |")
    print("|---|---|---|")
    for r in yardstick:
        print(f"| {r['pair']} | {r['n'][0]} vs {r['n'][1]} | {r['auc']:.3f} ± {r['auc_sd']:.3f} |")
    print("\nSky lines in ivar: sigma at the line / sigma 5-12 px away (median over spectra):")
    print("| line (vacuum Å) | dev real | dev synthetic | holdout real | holdout synthetic |")
    print("|---|---|---|---|---|")
    for i, line in enumerate(sky["line_aa"]):
        cells = [
            f"{sky[key][i]:.2f}"
            for key in ("dev_real", "dev_synthetic", "holdout_real", "holdout_synthetic")
        ]
        print(f"| {line:.1f} | " + " | ".join(cells) + " |")
    print(
        f"\nOndřejov templates' resolution (2.5 Å vs 0.5 Å FWHM), {ondrejov['files']} real files: "
        f"RMS difference of the 140-px vectors {ondrejov['rms_after_blur_median']:.3f} median, "
        f"{ondrejov['rms_after_blur_max']:.3f} max after the sigma-7 blur; "
        f"{ondrejov['rms_without_blur_median']:.3f} / {ondrejov['rms_without_blur_max']:.3f} "
        "without it"
    )
    o = ondrejov_sets
    print(
        f"\nOndřejov (measured, never tuned): {o['n_real']} real labelled vs {o['n_synthetic']} "
        f"synthetic SSAP spectra: discriminator AUC {o['auc']:.2f} ± {o['auc_sd']:.2f} "
        f"(indicative: few real files); HF scatter real {o['hf_real_median']:.3f} / synthetic "
        f"{o['hf_synthetic_median']:.3f}"
    )
    for name, v in o["ew_per_class"].items():
        print(
            f"  {name}: real EW {v['ew_real']} Å; synthetic 10/50/90 % "
            f"{v['ew_synthetic_quartiles']} Å"
        )


def synthetic_plates(
    real: Sample, config: PreprocessConfig, *, seed: int, repeats: int, per_plate: int = 40
) -> list[dict[str, object]]:
    """The yardstick among synthetic plates: one plate's F-G-K stars vs its other fibres, vs others.

    Spectra matched to ``real`` (classes, S/N), ``per_plate`` fibres per plate,
    six plates; each of the first three plates in turn is "the one plate".
    Without and with plate systematics.
    """
    rows: list[dict[str, object]] = []
    for systematics in (False, True):
        base = matched_population(real)
        population = Population.default(
            "lamost",
            base.mix,
            snr_values=base.snr_values,
            teff_values=base.teff_values,
            plate_systematics=systematics,
            fibres_per_plate=per_plate,
        )
        sim = simulate_spectra(6 * per_plate, archive="lamost", seed=seed, population=population)
        sample = make_sample("synthetic plates", sim.spectra, sim.labels, config)
        plate = np.array([int(row["index"]) // per_plate for row in sim.truth])
        fgk = np.array([c in "FGK" for c in sample.letters])
        rng = np.random.default_rng(seed)
        same_aucs, other_aucs, sizes = [], [], []
        for one in range(3):
            mine = rng.permutation(np.flatnonzero(fgk & (plate == one)))
            half = len(mine) // 2
            others = rng.permutation(np.flatnonzero(fgk & (plate != one)))[:half]
            sizes.append(half)
            same_aucs.append(
                discriminator_auc(
                    sample.X[mine[:half]], sample.X[mine[half:]], repeats=repeats, seed=seed
                )[0]
            )
            other_aucs.append(
                discriminator_auc(
                    sample.X[mine[:half]], sample.X[others], repeats=repeats, seed=seed
                )[0]
            )
        label = "with" if systematics else "without"
        for pair, aucs in (("same plate", same_aucs), ("other plates", other_aucs)):
            rows.append(
                {
                    "pair": f"synthetic plate vs synthetic {pair} ({label} plate systematics)",
                    "n": [int(np.mean(sizes)), int(np.mean(sizes))],
                    "auc": float(np.mean(aucs)),
                    "auc_sd": float(np.std(aucs)),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-real", type=int, default=8, help="synthetic spectra per real one")
    parser.add_argument("--repeats", type=int, default=4, help="repeats of the 5-fold CV")
    parser.add_argument(
        "--train",
        type=int,
        default=3000,
        help="synthetic training set for the false-emission check",
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--ondrejov-n", type=int, default=400, help="synthetic Ondřejov spectra")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--plates-only",
        action="store_true",
        help="only the plate yardstick (real and synthetic plates); prints its table",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    config = PreprocessConfig()
    if args.plates_only:
        dev, holdout = real_sample("dev", config), real_sample("holdout", config)
        yardstick = plate_yardstick(dev, holdout, config, seed=args.seed, repeats=args.repeats)
        yardstick += synthetic_plates(dev, config, seed=args.seed, repeats=args.repeats)
        print("| pair | n | AUC |\n|---|---|---|")
        for r in yardstick:
            print(
                f"| {r['pair']} | {r['n'][0]} vs {r['n'][1]} | {r['auc']:.3f} ± {r['auc_sd']:.3f} |"
            )
        print(f"{time.perf_counter() - started:.0f} s")
        return
    grid = grid_aa(config)
    rows = []
    pairs = []
    summaries: dict[str, object] = {}
    reals: dict[str, Sample] = {}
    sky: dict[str, list[float]] = {"line_aa": [float(v) for v in SKY_LINES_VAC_AA]}
    lamost_mix = {"absorption": 0.5, "emission": 0.3, "double-peak": 0.2}
    for k, role in enumerate(("dev", "holdout")):
        real = real_sample(role, config)
        synth = synthetic_sample(real, args.per_real * len(real.spectra), args.seed + k, config)
        pairs.append((real, synth))
        reals[role] = real
        sky[f"{role}_real"] = [float(v) for v in sky_line_sigma(real, SKY_LINES_VAC_AA)]
        sky[f"{role}_synthetic"] = [float(v) for v in sky_line_sigma(synth, SKY_LINES_VAC_AA)]
        naive_spec, naive_labels = naive_spectra(
            real, len(synth.spectra), args.seed + 10 + k, mix={"absorption": 1.0}
        )
        naive = make_sample(f"naive-vs-{real.name}", naive_spec, naive_labels, config)
        auc, auc_sd = discriminator_auc(real.X, synth.X, repeats=args.repeats, seed=args.seed)
        auc_naive, auc_naive_sd = discriminator_auc(
            real.X, naive.X, repeats=args.repeats, seed=args.seed
        )
        real_hf, syn_hf, naive_hf = hf_noise(real.X), hf_noise(synth.X), hf_noise(naive.X)
        real_slope, syn_slope = slopes(real.X, grid), slopes(synth.X, grid)
        real_ew, syn_ew = ews(real), ews(synth)
        # Ordinary stars stay ordinary: train on all classes, predict the real stars.
        train_pop = matched_population(real, lamost_mix)
        sim = simulate_spectra(
            args.train, archive="lamost", seed=args.seed + 100 + k, population=train_pop
        )
        train = make_sample("train", sim.spectra, sim.labels, config)
        naive_train_spec, naive_train_labels = naive_spectra(
            real, args.train, args.seed + 200 + k, mix=lamost_mix
        )
        naive_train = make_sample("naive-train", naive_train_spec, naive_train_labels, config)
        fer = false_emission_rate(train.X, train.labels, real.X, args.seed)
        fer_naive = false_emission_rate(naive_train.X, naive_train.labels, real.X, args.seed)
        per_class = {}
        for letter in "AFGKM":
            r = real_ew[[c == letter for c in real.letters]]
            s = syn_ew[[c == letter for c in synth.letters]]
            if r.size:
                per_class[letter] = {
                    "n_real": int(r.size),
                    "ew_real_median": float(np.nanmedian(r)),
                    "ew_synthetic_median": float(np.nanmedian(s)) if s.size else float("nan"),
                    "ew_synthetic_iqr": [
                        float(np.nanpercentile(s, 25)),
                        float(np.nanpercentile(s, 75)),
                    ]
                    if s.size
                    else [],
                }
        bins = [0, 15, 25, 40, 1e9]
        noise_bins = []
        for lo, hi in itertools.pairwise(bins):
            r = real_hf[(real.snr >= lo) & (real.snr < hi)]
            s = syn_hf[(synth.snr >= lo) & (synth.snr < hi)]
            noise_bins.append(
                {
                    "snr": f"{lo}-{hi if hi < 1e9 else 'inf'}",
                    "n_real": int(r.size),
                    "real_median": float(np.median(r)) if r.size else float("nan"),
                    "synthetic_median": float(np.median(s)) if s.size else float("nan"),
                }
            )
        row = {
            "set": role,
            "n_real": len(real.spectra),
            "n_synthetic": len(synth.spectra),
            "auc": auc,
            "auc_sd": auc_sd,
            "auc_naive_baseline": auc_naive,
            "auc_naive_sd": auc_naive_sd,
            "false_emission_rate": fer,
            "false_emission_rate_naive": fer_naive,
            "hf_noise_ks_p": ks_p(real_hf, syn_hf),
            "hf_noise_ks_p_naive": ks_p(real_hf, naive_hf),
            "slope_ks_p": ks_p(real_slope, syn_slope),
            "slope_real_median": float(np.median(real_slope)),
            "slope_synthetic_median": float(np.median(syn_slope)),
            "ew_ks_p": ks_p(real_ew, syn_ew),
        }
        rows.append(row)
        summaries[role] = {"ew_per_class": per_class, "noise_vs_snr": noise_bins}
        if role == "dev":
            noise_figure([real, synth, naive], args.out / "realism-noise-ew.png")
    figure(pairs, grid, args.out / "realism-spectra.png")
    ondrejov = ondrejov_resolution_check(config)
    ondrejov_sets = ondrejov_comparison(config, args.ondrejov_n, args.seed + 300)
    yardstick = plate_yardstick(
        reals["dev"], reals["holdout"], config, seed=args.seed, repeats=args.repeats
    )
    yardstick += synthetic_plates(reals["dev"], config, seed=args.seed, repeats=args.repeats)
    report(rows, summaries, ondrejov, ondrejov_sets, yardstick, sky)
    print(
        f"figures: {args.out / 'realism-spectra.png'}, {args.out / 'realism-noise-ew.png'}; "
        f"{time.perf_counter() - started:.0f} s"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "benchmark": "realism",
            "machine": machine(),
            "rows": rows,
            "details": summaries,
            "ondrejov_resolution": ondrejov,
            "ondrejov_sets": ondrejov_sets,
            "plate_yardstick": yardstick,
            "sky_line_sigma": sky,
        }
        args.json.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
