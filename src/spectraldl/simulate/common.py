"""Pieces both simulated archives share: per-spectrum random streams, star choice, truth rows."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from spectraldl.simulate.population import Population
from spectraldl.simulate.registry import simulated_archive
from spectraldl.simulate.templates import CLASS_TEFF_K, TemplateSet, template_weights


@dataclass(frozen=True)
class Streams:
    """Independent random streams of one spectrum, all derived from (seed, archive, index).

    ``star`` draws what the star is (class, template, velocity, lines); ``noise``
    the noise and defects; ``meta`` names, positions and dates. Keeping them
    apart means a change of file layout (release, form) keeps the star and its
    noise, and a new parameter in one stream does not shift the others.
    """

    star: np.random.Generator
    noise: np.random.Generator
    meta: np.random.Generator


def streams(seed: int, archive: str, index: int) -> Streams:
    """The streams of spectrum ``index`` (numpy SeedSequence spawn keys, PCG64)."""
    # The three children of SeedSequence(seed, spawn_key=(code, index)), made directly as
    # its spawn() makes them (the parent's own state is never used).
    key = (simulated_archive(archive).code, int(index))
    return Streams(
        *(
            np.random.Generator(
                np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=(*key, child)))
            )
            for child in range(3)
        )
    )


def choose_template(
    rng: np.random.Generator,
    templates: TemplateSet,
    fractions: dict[str, float],
    *,
    archive: str,
    teff_values: tuple[float, ...] = (),
) -> int:
    """A template star near a target Teff.

    The target is a resampled ``teff_values`` entry (jittered by 3 %) when
    given, else a spectral class drawn by ``fractions`` and a Teff log-uniform
    over the class's range (`CLASS_TEFF_K`: subtypes equally likely, rather
    than MILES' own lumpy sampling). Templates of the target's class are then
    weighted by a Gaussian in Teff (sigma 4 %) times `template_weights`
    (dwarf/giant shares, [Fe/H]).
    """
    members = _members(templates, archive)
    if teff_values:
        target = float(teff_values[int(rng.integers(len(teff_values)))]) * (
            1.0 + 0.03 * rng.normal()
        )
        spclass = next((c for c, (lo, _) in CLASS_TEFF_K.items() if target >= lo), "M")
        if spclass not in members:
            spclass = min(
                members, key=lambda c: abs(np.log(np.mean(CLASS_TEFF_K[c])) - np.log(target))
            )
    else:
        names = [c for c in fractions if fractions[c] > 0 and c in members]
        cumulative = np.cumsum([fractions[c] for c in names])
        u = rng.random() * cumulative[-1]
        spclass = names[min(int(np.searchsorted(cumulative, u, side="right")), len(names) - 1)]
        low, high = CLASS_TEFF_K[spclass]
        target = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    indices, weights = members[spclass]
    teff = templates.teff[indices]
    kernel = np.exp(-0.5 * ((teff - target) / (0.04 * target)) ** 2) * weights
    if kernel.sum() <= 1e-12 * weights.sum():
        return int(indices[int(np.argmin(np.abs(teff - target)))])
    cumulative = np.cumsum(kernel)
    pick = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    return int(indices[min(pick, indices.size - 1)])


_MEMBERS: dict[tuple[int, str], dict[str, tuple[np.ndarray, np.ndarray]]] = {}


def _members(templates: TemplateSet, archive: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per class: template indices and their `template_weights` (computed once)."""
    key = (id(templates), archive)
    if key not in _MEMBERS:
        weights = template_weights(templates, archive)
        _MEMBERS[key] = {
            str(c): (templates.of_class(c), weights[templates.of_class(c)])
            for c in np.unique(templates.spclass)
        }
    return _MEMBERS[key]


def draw_snr(
    rng: np.random.Generator, population: Population, *, label: str, default: float
) -> float:
    """S/N of one spectrum: the noise-class range, a resampled real value, or ``default``."""
    if label == "noise":
        low, high = simulated_archive(population.archive).noise_snr
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    if population.snr_values:
        value = population.snr_values[int(rng.integers(len(population.snr_values)))]
        return float(value * rng.uniform(0.9, 1.1))
    return default


def lognormal_mixture(
    rng: np.random.Generator, components: tuple[tuple[float, float, float], ...]
) -> float:
    """One draw from a mixture of lognormals ``(median, sigma_ln, weight)``."""
    weights = np.cumsum([c[2] for c in components])
    pick = min(
        int(np.searchsorted(weights, rng.random() * weights[-1], side="right")), len(components) - 1
    )
    median, sigma, _ = components[pick]
    return float(median * math.exp(rng.normal(0.0, sigma)))


def noise_profile(rng: np.random.Generator, *, archive: str) -> str:
    """The real profile under a noise-labelled spectrum (mostly ordinary stars)."""
    u = rng.random()
    profiles = simulated_archive(archive).noise_profiles
    return next((profile for limit, profile in profiles if u < limit), profiles[-1][1])


def correlated_normal(rng: np.random.Generator, n: int, *, sigma_px: float) -> np.ndarray:
    """Unit-variance Gaussian noise smoothed by a Gaussian of ``sigma_px`` pixels.

    LAMOST resamples each exposure onto its log-λ grid and co-adds them, which
    correlates neighbouring pixels; the kernel is normalised to unit L2 norm so
    the per-pixel variance stays 1.
    """
    white = rng.standard_normal(n + 8)
    if sigma_px <= 0:
        return white[4:-4]
    taps = np.arange(-4, 5, dtype=np.float64)
    kernel = np.exp(-0.5 * (taps / sigma_px) ** 2)
    kernel /= math.sqrt(float((kernel**2).sum()))
    return np.convolve(white, kernel, mode="valid")


def clamp(value: float, low: float, high: float) -> float:
    """``value`` limited to [low, high]: `numpy.clip` of one number (NaN stays NaN), without
    its dispatch, which costs more than the rest of a draw."""
    return float(min(max(value, low), high))


def template_truth(templates: TemplateSet, k: int, *, label: str, profile: str) -> dict[str, Any]:
    """A truth row's leading columns, the same for both archives: the class and template ``k``."""
    return {
        "label": label,
        "profile": profile,
        "template": str(templates.name[k]),
        "sptype": str(templates.sptype[k]),
        "spclass": str(templates.spclass[k]),
        "teff": float(templates.teff[k]),
        "logg": float(templates.logg[k]),
        "feh": float(templates.feh[k]),
    }
