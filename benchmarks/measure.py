"""Benchmark of `spectraldl.prep.measure.measure_halpha` against simulated truth, and its cost.

On spectra from `spectraldl.simulate` (LAMOST-like DR1 and Ondřejov-like SSAP,
every line kind, S/N drawn log-uniformly over 5-100), per archive and S/N bin:

* EW: median error (bias) and robust scatter (1.4826 MAD) against truth.csv's
  ``halpha_ew_aa``, the share within the goal (10 % or 0.3 Å), and the share
  whose stated 1-sigma error covers the truth (goal 68 %);
* FWHM of single-peaked emission against the truth convolved with the
  instrument (``sqrt(line_fwhm_kms² + (c/R)²)``, a Gaussian approximation);
* peak separation (relative error) and V/R (median ratio) of double peaks
  separated by more than two resolution elements, where two peaks were found;
* the confusion of ``profile_type`` with the simulated line kind (``none``,
  ``fill``: emission filling an absorption core, ``single``, ``disc``).

Cost: measuring per spectrum as classify does (each file's H-alpha window cut
out, `halpha_window`, and the chunk's windows measured at once,
`measure_halpha_windows`) and one spectrum at a time (`measure_halpha`),
against reading + preprocessing the same files (`read_spectrum` +
`preprocess`, the part of classify's per-file time that does not depend on the
network: a lower bound of it, so the ratio is an upper bound of what measuring
adds), all in the same run. Last, EW and type of each bundled real labelled
star.

    .venv/bin/python benchmarks/measure.py [--n 400] [--json out.json]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json

from spectraldl.io.archives import read_spectrum
from spectraldl.io.bundled import bundled_files
from spectraldl.prep.batch import preprocess_many
from spectraldl.prep.measure import (
    C_KMS,
    PROFILE_TYPES,
    halpha_window,
    measure_halpha,
    measure_halpha_windows,
)
from spectraldl.prep.preprocess import PreprocessConfig
from spectraldl.simulate import Population, simulate_archive, simulate_spectra

MIX = {"emission": 0.3, "absorption": 0.4, "double-peak": 0.3}
SNR_BINS = ((5.0, 10.0), (10.0, 20.0), (20.0, 50.0), (50.0, 100.0))
KIND_RIGHT = {
    "none": {"absorption"},
    "fill": {"absorption", "emission-in-absorption"},
    "single": {"emission", "emission-in-absorption"},
    "disc": {"double-peak", "double-peak-in-absorption"},
}
"""Profile types that are right for each simulated line kind."""
EMISSION_FAMILY = set(PROFILE_TYPES[:6])


def _robust(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else math.nan


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if x.size else math.nan


def measured(archive: str, n: int, seed: int) -> list[dict[str, Any]]:
    """Simulate ``n`` spectra and measure each: one record of truth and measurement."""
    snr = np.geomspace(5.0, 100.0, 64)
    population = Population.default(archive, MIX, snr_values=snr)
    kwargs = {"release": "dr1"} if archive == "lamost" else {"form": "ssap"}
    sim = simulate_spectra(n, archive=archive, seed=seed, population=population, **kwargs)
    out = []
    for spectrum, truth in zip(sim.spectra, sim.truth, strict=True):
        m = measure_halpha(spectrum)
        out.append({"archive": archive, **{f"truth_{k}": v for k, v in truth.items()}, **vars(m)})
    return out


def accuracy_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for archive in ("lamost", "ondrejov"):
        for lo, hi in SNR_BINS:
            sel = [
                r for r in records if r["archive"] == archive and lo <= r["truth_snr"] < hi * 1.1
            ]
            ok = [r for r in sel if r["profile_type"] != "unmeasurable"]
            truth = np.array([r["truth_halpha_ew_aa"] for r in ok], float)
            ew = np.array([r["halpha_ew_aa"] for r in ok], float)
            err = np.array([r["halpha_ew_err_aa"] for r in ok], float)
            d = ew - truth
            within = np.abs(d) <= np.maximum(0.1 * np.abs(truth), 0.3)
            singles = [
                r
                for r in ok
                if r["truth_line_kind"] == "single" and r["profile_type"] == "emission"
            ]
            expected = np.array(
                [
                    math.hypot(r["truth_line_fwhm_kms"], C_KMS / r["truth_resolving_power"])
                    for r in singles
                ]
            )
            fwhm = np.array([r["halpha_fwhm_kms"] for r in singles], float)
            f_rel = fwhm / expected - 1.0 if singles else np.zeros(0)
            f_rel = f_rel[np.isfinite(f_rel)]
            discs = [
                r
                for r in ok
                if r["truth_line_kind"] == "disc"
                and r["truth_line_peak_separation_kms"] > 2 * C_KMS / r["truth_resolving_power"]
            ]
            found = [r for r in discs if math.isfinite(r["halpha_peak_sep_kms"])]
            s_rel = np.array(
                [r["halpha_peak_sep_kms"] / r["truth_line_peak_separation_kms"] - 1 for r in found]
            )
            vr = np.array([r["halpha_vr"] / r["truth_line_vr_ratio"] for r in found])
            vr = vr[np.isfinite(vr) & (vr > 0)]
            rows.append(
                {
                    "archive": archive,
                    "snr": f"{lo:g}-{hi:g}",
                    "n": len(sel),
                    "unmeasurable": len(sel) - len(ok),
                    "ew_bias_aa": _median(d),
                    "ew_scatter_aa": _robust(d),
                    "ew_med_abs_rel": _median(np.abs(d) / np.maximum(np.abs(truth), 1e-9)),
                    "ew_within_goal": float(within.mean()) if ok else math.nan,
                    "ew_err_coverage": float(np.mean(np.abs(d) <= err)) if ok else math.nan,
                    "fwhm_n": int(f_rel.size),
                    "fwhm_bias_rel": _median(f_rel),
                    "fwhm_scatter_rel": _robust(f_rel),
                    "sep_n_found": f"{len(found)}/{len(discs)}",
                    "sep_med_abs_rel": _median(np.abs(s_rel)),
                    "vr_med_ratio": _median(vr),
                }
            )
    return rows


def confusion_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for archive in ("lamost", "ondrejov"):
        for kind in ("none", "fill", "single", "disc"):
            for high in (False, True):
                sel = [
                    r
                    for r in records
                    if r["archive"] == archive
                    and r["truth_line_kind"] == kind
                    and (r["truth_snr"] >= 20) == high
                ]
                counts = Counter(r["profile_type"] for r in sel)
                right = sum(counts[t] for t in KIND_RIGHT[kind])
                family = sum(counts[t] for t in EMISSION_FAMILY)
                rows.append(
                    {
                        "archive": archive,
                        "kind": kind,
                        "snr": ">=20" if high else "<20",
                        "n": len(sel),
                        "right": right / len(sel) if sel else math.nan,
                        "emission_family": family / len(sel) if sel else math.nan,
                        **{t: counts[t] for t in PROFILE_TYPES},
                    }
                )
    return rows


def cost_rows(n_files: int, seed: int) -> list[dict[str, Any]]:
    """Milliseconds per file: read + preprocess (baseline) and measure, same files."""
    rows = []
    config = PreprocessConfig()
    for archive in ("lamost", "ondrejov"):
        with tempfile.TemporaryDirectory() as tmp:
            kwargs = {"release": "dr1"} if archive == "lamost" else {"form": "ssap"}
            simulate_archive(tmp, archive=archive, n=n_files, seed=seed, mix=MIX, **kwargs)
            files = sorted(p for p in Path(tmp).rglob("*") if p.is_file() and "fit" in p.name)
            t0 = time.perf_counter()
            spectra = [read_spectrum(p) for p in files]
            t1 = time.perf_counter()
            preprocess_many(spectra, config)  # as ingest and classify do (`read_and_preprocess`)
            t2 = time.perf_counter()
            measure_halpha_windows([halpha_window(s) for s in spectra])
            t3 = time.perf_counter()
            for s in spectra:
                measure_halpha(s)
            t4 = time.perf_counter()
        base = (t2 - t0) / len(files)
        rows.append(
            {
                "archive": archive,
                "files": len(files),
                "read_ms": 1e3 * (t1 - t0) / len(files),
                "preprocess_ms": 1e3 * (t2 - t1) / len(files),
                "measure_ms": 1e3 * (t3 - t2) / len(files),
                "measure_over_read_preprocess": (t3 - t2) / len(files) / base,
                "measure_one_by_one_ms": 1e3 * (t4 - t3) / len(files),
                "one_by_one_over_read_preprocess": (t4 - t3) / len(files) / base,
            }
        )
    return rows


def real_rows() -> list[dict[str, Any]]:
    rows = []
    for f in bundled_files():
        if not f.label:
            continue
        m = measure_halpha(read_spectrum(f.path))
        rows.append(
            {
                "file": f"{f.path.parent.name}/{f.path.name}",
                "label": f.label,
                "role": f.role,
                "ew_aa": m.halpha_ew_aa,
                "ew_err_aa": m.halpha_ew_err_aa,
                "profile_type": m.profile_type,
                "fwhm_kms": m.halpha_fwhm_kms,
                "sep_kms": m.halpha_peak_sep_kms,
                "flag": m.halpha_flag,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=400, help="Spectra per archive.")
    parser.add_argument("--n-files", type=int, default=200, help="Files per archive for cost.")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", help="Write the results as JSON here.")
    args = parser.parse_args()
    records = [r for a in ("lamost", "ondrejov") for r in measured(a, args.n, args.seed)]
    accuracy = accuracy_rows(records)
    print_table(
        "H-alpha measured against simulated truth (EW Å; FWHM, separation relative)",
        accuracy,
        list(accuracy[0]),
    )
    confusion = confusion_rows(records)
    print_table("profile_type against the simulated line kind", confusion, list(confusion[0]))
    cost = cost_rows(args.n_files, args.seed)
    print_table("cost per file (ms): measuring against read + preprocess", cost, list(cost[0]))
    real = real_rows()
    print_table("bundled real labelled stars", real, list(real[0]))
    write_json(
        args.json,
        "measure",
        accuracy,
        confusion=confusion,
        cost=cost,
        real=real,
        n_per_archive=args.n,
        seed=args.seed,
    )


if __name__ == "__main__":
    main()
