"""Derive the compact stellar template set that `spectraldl.simulate` ships with.

Reads the MILES v9.1 stellar library and the MaStar hierarchically clustered
templates from the project's shared data folder (``../shared/data/templates``,
copied from the sdss-mangadap 4.5.0 wheel, BSD-3) and writes
``src/spectraldl/data/templates/templates.npz`` plus its provenance
``README.md`` (the list of stars left out and why).

What is kept, per usable MILES star (Sánchez-Blázquez et al. 2006; Falcón-Barroso
et al. 2011: air wavelengths, 2.5 Å FWHM, 0.9 Å/px):

* the flux on 6200.0-6849.8 Å (air, the native 0.9 Å pixels, 723 of them),
  quantised to uint16 with a per-star scale (relative error < 2e-5);
* the upper-envelope continuum over that window (a quadratic, for
  normalisation and to scale emission lines to the star's continuum);
* the parameters (Teff, log g, [Fe/H]) and spectral type from
  ``miles_paramsMILES_v9.1.txt``, a spectral class O-M and a LAMOST-like
  subclass string;
* the MaStar template (Yan et al. 2019; the MaNGA DAP "MASTARHC" set, on
  LAMOST's own log10 grid and resolution) whose broad shape over 3700-7400 Å
  matches the star best, and a quadratic log-ratio correction: LAMOST files
  need the whole 3700-9100 Å range, MILES stops at 7410 Å.

Stars are left out when their parameters are missing, their flux is not
finite and positive over the window, H-alpha is in emission (measured: the
peak within ±4 Å of 6562.8 Å above the pseudo-continuum at 6535-6545 and
6580-6590 Å by the thresholds in `is_emission`, or an emission type such as
``Iae``, ``pe``, ``M6e``: those would teach the network that ordinary
absorption templates can have emission), or they are supergiants or carbon/S
stars (`survey_unlike`).

Run from the repository root: ``.venv/bin/python tools/derive_templates.py``
(``--shared PATH`` if the shared data folder is elsewhere).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy.ndimage import gaussian_filter1d

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "src" / "spectraldl" / "data" / "templates"

MILES_START_AA = 3540.5
MILES_STEP_AA = 0.9
MILES_N = 4300
WINDOW_FIRST = 2955  # 3540.5 + 0.9 * 2955 = 6200.0 Å
WINDOW_N = 723  # up to 6849.8 Å
LAMOST_COEFF0 = 3.5682
LAMOST_COEFF1 = 1e-4
LAMOST_N = 3909
MASTAR_COEFF0 = 3.5601
HALPHA_AIR_AA = 6562.80
CONT_X0_AA, CONT_SCALE_AA = 6525.0, 325.0
SHAPE_X0_AA, SHAPE_SCALE_AA = 5500.0, 2000.0

_EMISSION_TYPE = re.compile(r"Iae|(?<!s)pe|[0-9.]e\b|\(e\)")
"""Emission marks in MILES types (``Iae``, ``pe``, ``M6e``); ``spe`` (sharp, peculiar) is not."""

_SUPERGIANT = re.compile(r"(?<![IV])I(a\+?|ab|b)?(?![IV])")
"""Luminosity class I (``Ia``, ``Iab``, ``Ib``; not ``II``, ``III``, ``IV``)."""

_PECULIAR = re.compile(r"^(R|N|C|S|MS)(\b|\d|\.|\?)|S\?|\bMS\b")
"""Carbon (R, N, C) and S-type stars."""


@dataclass
class Star:
    """One line of the MILES parameter table."""

    miles_id: int
    name: str
    sptype: str
    teff: float
    logg: float
    feh: float


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def read_miles_params(path: Path) -> list[Star]:
    """Parse the fixed-width MILES v9.1 parameter table (name, id, SpT, Teff, log g, [Fe/H])."""
    stars = []
    for line in path.read_text(encoding="latin-1").splitlines()[3:]:
        ident = line[22:29].strip()
        if not ident.isdigit():
            continue
        stars.append(
            Star(
                miles_id=int(ident),
                name=line[:22].strip(),
                sptype=line[36:51].strip(),
                teff=_number(line[51:56].strip()),
                logg=_number(line[56:64].strip()),
                feh=_number(line[64:73].strip()),
            )
        )
    return stars


CLASS_TEFF_K = (
    ("O", 31000.0, 45000.0),
    ("B", 10000.0, 31000.0),
    ("A", 7400.0, 10000.0),
    ("F", 6000.0, 7400.0),
    ("G", 5300.0, 6000.0),
    ("K", 3900.0, 5300.0),
    ("M", 2300.0, 3900.0),
)
"""Effective temperature of each spectral class, hottest (subtype 0) to coolest (subtype 9),
rounded from the dwarf sequence of Pecaut & Mamajek (2013, ApJS 208, 9)."""


def spectral_class(star: Star) -> str:
    """Class O-M from Teff: what the spectrum looks like, as LAMOST's pipeline classifies it.

    MILES types are heterogeneous (old catalogue types, horizontal-branch and
    peculiar stars filed under A or B); Teff follows the spectrum's appearance.
    """
    for letter, low, _ in CLASS_TEFF_K:
        if star.teff >= low:
            return letter
    return "M"


def lamost_subclass(star: Star, letter: str) -> str:
    """A LAMOST-like SUBCLASS (``F9``, ``K5``...): the subtype interpolated in Teff."""
    low, high = next((lo, hi) for c, lo, hi in CLASS_TEFF_K if c == letter)
    fraction = (high - min(max(star.teff, low), high)) / (high - low)
    return f"{letter}{min(int(fraction * 10), 9)}"


def continuum_quadratic(wave: np.ndarray, flux: np.ndarray, teff: float) -> np.ndarray:
    """Upper-envelope quadratic over the window, H-alpha wings left out (wider for hot stars)."""
    half = 70.0 if teff > 7000 else 35.0 if teff > 5000 else 15.0
    x = (wave - CONT_X0_AA) / CONT_SCALE_AA
    keep = np.abs(wave - HALPHA_AIR_AA) > half
    coeffs = np.polyfit(x[keep], flux[keep], 2)
    for _ in range(8):
        resid = flux - np.polyval(coeffs, x)
        scale = np.std(resid[keep])
        keep = keep & (resid > -0.5 * scale)
        coeffs = np.polyfit(x[keep], flux[keep], 2)
    return coeffs


def halpha_core_ratio(wave: np.ndarray, flux: np.ndarray) -> float:
    """Peak flux within ±4 Å of H-alpha over the median pseudo-continuum beside it."""
    core = np.abs(wave - HALPHA_AIR_AA) < 4.0
    side = (np.abs(wave - 6540.0) < 5.0) | (np.abs(wave - 6585.0) < 5.0)
    return float(flux[core].max() / np.median(flux[side]))


def is_emission(star: Star, ratio: float) -> str:
    """Why a star shows H-alpha emission ('' when it does not)."""
    if _EMISSION_TYPE.search(star.sptype):
        return f"emission type {star.sptype!r} (core/continuum {ratio:.2f})"
    if ratio > 1.10:
        return f"H-alpha core {ratio:.2f} x pseudo-continuum"
    if star.teff > 7000 and ratio > 1.0:
        return f"hot star with H-alpha core {ratio:.2f} x pseudo-continuum (filled in)"
    if star.logg > 4.0 and star.teff < 4400 and ratio > 1.03:
        return f"active cool dwarf, H-alpha core {ratio:.2f} x pseudo-continuum"
    return ""


def survey_unlike(star: Star) -> str:
    """Why a star is unlike the targets of either survey ('' when it is like them).

    Supergiants and carbon/S stars are rare among LAMOST's and the Ondřejov
    H-alpha programme's targets, while MILES holds many (it was built to model
    stellar populations); their spectra differ from the dwarfs and giants of
    the same Teff.
    """
    if _PECULIAR.search(star.sptype):
        return f"carbon or S star ({star.sptype!r})"
    if _SUPERGIANT.search(star.sptype):
        return f"supergiant ({star.sptype!r})"
    return ""


def lamost_wave() -> np.ndarray:
    """LAMOST's vacuum grid, 10**(3.5682 + 1e-4 i), i < 3909."""
    return 10.0 ** (LAMOST_COEFF0 + LAMOST_COEFF1 * np.arange(LAMOST_N))


def read_mastar(folder: Path) -> tuple[list[str], np.ndarray]:
    """MaStar HC templates cut to LAMOST's grid (same log10 step), bad pixels interpolated."""
    names, fluxes = [], []
    offset = round((LAMOST_COEFF0 - MASTAR_COEFF0) / LAMOST_COEFF1)
    for path in sorted(folder.glob("MaStarHC_*.fits")):
        with fits.open(path) as hdul:
            flux = np.asarray(hdul[0].data, dtype=np.float64)[offset : offset + LAMOST_N]
            start = hdul[0].header["CRVAL1"]
        if abs(start - MASTAR_COEFF0) > 1e-9 or flux.size != LAMOST_N:
            raise ValueError(f"{path}: unexpected grid (CRVAL1={start}, {flux.size} pixels)")
        good = np.isfinite(flux) & (flux > 0)
        idx = np.arange(LAMOST_N)
        flux = np.interp(idx, idx[good], flux[good])
        names.append(path.stem)
        fluxes.append(flux / np.median(flux))
    return names, np.array(fluxes)


def match_mastar(
    miles_wave: np.ndarray, miles_flux: np.ndarray, mastar_log_smooth: np.ndarray
) -> tuple[int, np.ndarray, float]:
    """Best MaStar template by broad shape (log flux, smoothed) and the log-ratio quadratic."""
    wave = lamost_wave()
    sel = (wave > 3700) & (wave < 7400)
    smooth = gaussian_filter1d(miles_flux, 30.0 / MILES_STEP_AA)
    own = np.log(np.interp(wave[sel], miles_wave, smooth))
    diffs = own[None, :] - mastar_log_smooth[:, sel]
    diffs -= diffs.mean(axis=1, keepdims=True)
    rms = np.sqrt((diffs**2).mean(axis=1))
    best = int(np.argmin(rms))
    x = (wave[sel] - SHAPE_X0_AA) / SHAPE_SCALE_AA
    coeffs = np.polyfit(x, own - mastar_log_smooth[best, sel], 2)
    return best, coeffs, float(rms[best])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    shared: Path = args.shared
    stars = read_miles_params(shared / "labels" / "miles_paramsMILES_v9.1.txt")
    mastar_names, mastar = read_mastar(shared / "templates" / "mastar")
    mastar_log_smooth = np.log(gaussian_filter1d(mastar, 15.0, axis=1))
    wave_all = MILES_START_AA + MILES_STEP_AA * np.arange(MILES_N)
    window = slice(WINDOW_FIRST, WINDOW_FIRST + WINDOW_N)
    wave = wave_all[window]
    kept: dict[str, list] = {
        k: []
        for k in [
            "miles_id",
            "name",
            "sptype",
            "spclass",
            "subclass",
            "teff",
            "logg",
            "feh",
            "flux_u16",
            "flux_scale",
            "cont_coeffs",
            "mastar_index",
            "shape_coeffs",
            "shape_rms",
            "halpha_core_ratio",
        ]
    }
    left_out: list[tuple[int, str, str, str]] = []
    for star in stars:
        path = shared / "templates" / "miles" / f"MILES_res2.50_star_m{star.miles_id:04d}V.fits"
        if not path.exists():
            left_out.append((star.miles_id, star.name, star.sptype, "no spectrum file"))
            continue
        flux_all = np.asarray(fits.getdata(path), dtype=np.float64)
        flux = flux_all[window]
        if not np.isfinite([star.teff, star.logg]).all():
            left_out.append((star.miles_id, star.name, star.sptype, "Teff or log g missing"))
            continue
        if not (np.isfinite(flux).all() and (flux > 0).all()):
            left_out.append((star.miles_id, star.name, star.sptype, "flux not positive"))
            continue
        ratio = halpha_core_ratio(wave, flux)
        reason = is_emission(star, ratio) or survey_unlike(star)
        if reason:
            left_out.append((star.miles_id, star.name, star.sptype, reason))
            continue
        good = np.isfinite(flux_all) & (flux_all > 0)
        full = np.interp(wave_all, wave_all[good], flux_all[good])
        best, shape, rms = match_mastar(wave_all, full / np.median(full), mastar_log_smooth)
        letter = spectral_class(star)
        norm = flux / np.median(flux)
        scale = float(norm.max()) * (1 + 1e-6)
        kept["miles_id"].append(star.miles_id)
        kept["name"].append(star.name)
        kept["sptype"].append(star.sptype)
        kept["spclass"].append(letter)
        kept["subclass"].append(lamost_subclass(star, letter))
        kept["teff"].append(star.teff)
        kept["logg"].append(star.logg)
        kept["feh"].append(star.feh if np.isfinite(star.feh) else 0.0)
        kept["flux_u16"].append(np.round(norm / scale * 65535).astype(np.uint16))
        kept["flux_scale"].append(scale)
        kept["cont_coeffs"].append(continuum_quadratic(wave, norm, star.teff))
        kept["mastar_index"].append(best)
        kept["shape_coeffs"].append(shape)
        kept["shape_rms"].append(rms)
        kept["halpha_core_ratio"].append(ratio)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT_DIR / "templates.npz",
        miles_id=np.array(kept["miles_id"], np.int16),
        name=np.array(kept["name"]),
        sptype=np.array(kept["sptype"]),
        spclass=np.array(kept["spclass"]),
        subclass=np.array(kept["subclass"]),
        teff=np.array(kept["teff"], np.float32),
        logg=np.array(kept["logg"], np.float32),
        feh=np.array(kept["feh"], np.float32),
        flux_u16=np.array(kept["flux_u16"]),
        flux_scale=np.array(kept["flux_scale"], np.float64),
        window_start_aa=np.float64(wave[0]),
        window_step_aa=np.float64(MILES_STEP_AA),
        cont_coeffs=np.array(kept["cont_coeffs"], np.float64),
        cont_x0_aa=np.float64(CONT_X0_AA),
        cont_scale_aa=np.float64(CONT_SCALE_AA),
        mastar_index=np.array(kept["mastar_index"], np.int16),
        shape_coeffs=np.array(kept["shape_coeffs"], np.float64),
        shape_x0_aa=np.float64(SHAPE_X0_AA),
        shape_scale_aa=np.float64(SHAPE_SCALE_AA),
        halpha_core_ratio=np.array(kept["halpha_core_ratio"], np.float32),
        mastar_names=np.array(mastar_names),
        mastar_flux=mastar.astype(np.float32),
        mastar_coeff0=np.float64(LAMOST_COEFF0),
        mastar_coeff1=np.float64(LAMOST_COEFF1),
    )
    write_readme(kept, left_out, mastar_names)
    counts = {c: kept["spclass"].count(c) for c in "OBAFGKM"}
    print(f"kept {len(kept['name'])} stars {counts}; left out {len(left_out)}")


def write_readme(
    kept: dict[str, list], left_out: list[tuple[int, str, str, str]], mastar: list[str]
) -> None:
    """Provenance of the template set: sources, what was derived, and every star left out."""
    counts = ", ".join(f"{c} {kept['spclass'].count(c)}" for c in "OBAFGKM")
    lines = [
        "# Stellar templates for `spectraldl.simulate`: provenance",
        "",
        "`templates.npz` is derived by `tools/derive_templates.py` (run it from the",
        "repository root to rebuild it) from two stellar libraries that the project's",
        "shared data folder copied from the sdss-mangadap 4.5.0 wheel (BSD-3):",
        "",
        "- **MILES v9.1** (Sánchez-Blázquez et al. 2006, MNRAS 371, 703; Falcón-Barroso",
        "  et al. 2011, A&A 532, A95): 985 stars, 3540-7410 Å in air, 2.5 Å FWHM",
        "  (R about 2600 at H-alpha), 0.9 Å pixels; parameters from",
        "  `miles_paramsMILES_v9.1.txt`.",
        "- **MaStar HC templates** (Yan et al. 2019, ApJ 883, 175; the MaNGA DAP",
        "  hierarchically clustered set): 65 templates on LAMOST's log10 grid (step 1e-4)",
        "  and resolution (R about 1800-2300).",
        "",
        "## What is stored",
        f"- {len(kept['name'])} MILES stars ({counts}): flux on 6200.0-6849.8 Å (air, 723",
        "  native pixels) as uint16 with a per-star scale; an upper-envelope quadratic",
        "  continuum over that window; Teff, log g, [Fe/H], the MILES spectral type, a",
        "  class O-M and a LAMOST-like subclass; the index of the MaStar template with",
        "  the closest broad shape over 3700-7400 Å and a quadratic log-ratio correction.",
        f"- The {len(mastar)} MaStar templates cut to LAMOST's 3909-pixel grid",
        "  (10**(3.5682 + 1e-4 i)), normalised to median 1, bad pixels interpolated.",
        "",
        "LAMOST-like spectra use the MaStar shape outside 6200-6850 Å and the MILES star",
        "inside it; Ondřejov-like spectra use only the MILES window. MILES resolution",
        "(2.5 Å FWHM) is below Ondřejov CCD700's (about 0.5 Å): see docs/simulate.md.",
        "",
        "## Stars left out",
        "",
        "| MILES | star | type | why |",
        "|---|---|---|---|",
    ]
    lines += [f"| {mid:04d} | {name} | {spt} | {why} |" for mid, name, spt, why in left_out]
    lines.append("")
    (OUT_DIR / "README.md").write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
