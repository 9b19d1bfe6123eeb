"""Synthetic spectra built on real stars: the project's one factory of labelled spectra.

Public API (see docs/simulate.md):

* `simulate_spectra` -> labelled `Spectrum` objects in memory;
* `simulate_vectors` -> their preprocessed 140-point vectors;
* `simulate_archive` -> FITS files in the archives' real layouts + ``truth.csv``;
* `Population`, `parse_mix`, the default mixes, `JUNK_KINDS`.

Modules: `templates` (MILES + MaStar stars), `population` (who is drawn),
`halpha` and `physics` (line profiles, extinction, sky, tellurics), `lamost`
and `ondrejov` (instruments, pipelines, file layouts), `junk` (broken files),
`fitsbytes` (fast FITS writing), `archive` (the factory functions),
`registry` (each survey's module registers its layouts, writer and default
population there; the factory functions look it up, so adding a survey is
adding one module).
"""

from spectraldl.simulate.archive import (
    ArchiveSummary,
    SimulatedSpectra,
    SimulatedVectors,
    read_truth_csv,
    simulate_archive,
    simulate_spectra,
    simulate_vectors,
)
from spectraldl.simulate.junk import JUNK_KINDS, JUNK_REASONS
from spectraldl.simulate.population import (
    LAMOST_MIX,
    ONDREJOV_MIX,
    SIMULATED_CLASSES,
    MixError,
    Population,
    parse_mix,
)

__all__ = [
    "JUNK_KINDS",
    "JUNK_REASONS",
    "LAMOST_MIX",
    "ONDREJOV_MIX",
    "SIMULATED_CLASSES",
    "ArchiveSummary",
    "MixError",
    "Population",
    "SimulatedSpectra",
    "SimulatedVectors",
    "parse_mix",
    "read_truth_csv",
    "simulate_archive",
    "simulate_spectra",
    "simulate_vectors",
]
