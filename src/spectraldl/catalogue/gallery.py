"""A gallery for vetting candidates: one PNG per candidate and an offline ``index.html``.

Each PNG shows the whole spectrum as read from its source file
(`spectraldl.io.archives.read_spectrum`) and a zoom on H-alpha (the network's
window, vacuum wavelengths), with the class probabilities, the novelty score
and the quality flags. The zoom draws what `spectraldl.prep.measure.fit_halpha`
fitted (the continuum and the measured peaks) and its caption gives the
measured EW, profile type, FWHM and peak separation. ``index.html`` is a
contact sheet of all of them, one self-contained file (no CDN, no server: open
it from disk) whose table sorts by any column (probability, novelty, S/N, ...)
with a click.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from spectraldl.core.atomic import atomic_write
from spectraldl.core.errors import SpectrumError
from spectraldl.core.jsonsafe import json_safe
from spectraldl.io.archives import read_spectrum
from spectraldl.io.predictions import classes_in, probability_column
from spectraldl.jobs.engine import map_in_order
from spectraldl.prep.measure import CONTINUUM_BANDS_AA, SHOWN_MEASUREMENTS, fit_halpha
from spectraldl.prep.preprocess import HALPHA_VACUUM_AA, vacuum_wavelengths

ZOOM_AA = (6519.0, 6732.0)
"""The network's window (vacuum Å), shown in the zoom panel."""

GALLERY_CHUNK = 64
"""Candidates per task when several processes draw."""


@dataclass
class GallerySummary:
    """What `write_gallery` drew."""

    index: Path
    images: int
    candidates: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(id, reason) of candidates whose spectrum could not be drawn."""


def image_name(identifier: str, source: str = "") -> str:
    """A safe, unique-enough PNG file name for a spectrum id."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", identifier.rsplit("/", 1)[-1]).strip("._") or "spectrum"
    if source:
        stem += "-" + hashlib.sha1(f"{identifier}|{source}".encode()).hexdigest()[:6]
    return stem[:120] + ".png"


class _Panels:
    """One figure whose axes and artists are reused for every candidate.

    Building the axes, ticks and labels again for each PNG took most of its
    time; updating the lines' data, the limits and the title does not.
    """

    def __init__(self) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        self.fig = Figure(figsize=(10.0, 3.0))
        self.full, self.zoom = self.fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1.0]})
        (self.full_line,) = self.full.plot([], [], lw=0.5, color="0.2")
        self.full.axvspan(*ZOOM_AA, color="tab:orange", alpha=0.15, lw=0)
        self.full.set_xlabel("vacuum wavelength (Å)")
        self.full.set_ylabel("flux")
        self.zoom.set_ylabel("flux")
        (self.zoom_line,) = self.zoom.plot([], [], lw=1.0, color="tab:blue", drawstyle="steps-mid")
        (self.masked,) = self.zoom.plot([], [], "x", ms=3, color="tab:red", label="masked")
        (self.continuum,) = self.zoom.plot(
            [], [], lw=0.8, ls="--", color="tab:green", label="continuum"
        )
        (self.peaks,) = self.zoom.plot([], [], "v", ms=5, color="tab:purple", label="peaks")
        self.legend = self.zoom.legend(fontsize=7, loc="lower right")
        self.caption = self.zoom.set_title("", fontsize=7)
        self.zoom.axvline(HALPHA_VACUUM_AA, color="tab:red", lw=0.6, ls="--")
        self.zoom.set_xlabel("vacuum wavelength (Å)")
        # Names are text: a "$" in one (a price, a mangled header) is no mathtext to parse.
        self.title = self.fig.suptitle("", fontsize=8, x=0.01, ha="left", parse_math=False)
        self.fig.subplots_adjust(left=0.07, right=0.99, bottom=0.17, top=0.82, wspace=0.24)
        for ax in (self.full, self.zoom):
            ax.tick_params(labelsize=7)
            ax.xaxis.label.set_size(8)
            ax.yaxis.label.set_size(8)

    def draw(self, row: dict[str, Any], classes: tuple[str, ...]) -> None:
        """Show the candidate of ``row``: its whole spectrum, the H-alpha zoom and a title."""
        spectrum = read_spectrum(row["source"])
        wave = vacuum_wavelengths(spectrum)
        flux = spectrum.flux
        unit = f"flux ({spectrum.flux_unit})" if spectrum.flux_unit else "flux (archive units)"
        self.full.set_ylabel(unit)
        self.zoom.set_ylabel(unit)
        self.full_line.set_data(wave, flux)
        self.full.relim()
        self.full.autoscale_view()
        finite = np.isfinite(flux)
        inside = (wave >= ZOOM_AA[0]) & (wave <= ZOOM_AA[1])
        if finite.any():
            # Clip the blue end's noise and cosmics, but never the H-alpha line itself.
            lo, hi = np.percentile(flux[finite], [0.5, 99.5])
            if (finite & inside).any():
                lo = min(lo, float(flux[finite & inside].min()))
                hi = max(hi, float(flux[finite & inside].max()))
            pad = 0.1 * (hi - lo) or 1.0
            self.full.set_ylim(lo - pad, hi + pad)
        self.zoom_line.set_data(wave[inside], flux[inside])
        bad = spectrum.mask & inside if spectrum.mask is not None else np.zeros_like(inside)
        self.masked.set_data(wave[bad], flux[bad])
        line, fit = fit_halpha(spectrum)
        if fit is None:
            self.continuum.set_data([], [])
            self.peaks.set_data([], [])
        else:
            ends = np.array([max(CONTINUUM_SPAN_AA[0], ZOOM_AA[0]), CONTINUUM_SPAN_AA[1]])
            self.continuum.set_data(ends, fit.continuum_at(ends))
            peaks = np.array(fit.peaks_aa, dtype=np.float64)
            self.peaks.set_data(peaks, fit.continuum_at(peaks) * np.array(fit.peak_heights))
        self.legend.set_visible(bool(bad.any()) or fit is not None)
        measured = {k: row[k] for k in SHOWN_MEASUREMENTS if k in row} or line.as_dict()
        self.caption.set_text(measurement_caption(measured))
        self.zoom.relim()
        self.zoom.autoscale_view()
        self.zoom.set_xlim(*ZOOM_AA)
        probabilities = "  ".join(
            f"p({c})={float(row[probability_column(c)]):.2f}" for c in classes
        )
        flags = row["quality_flags"]
        flags = flags if isinstance(flags, str) and flags else "no flags"
        self.title.set_text(
            f"{row['id']}  {row['object']}  ->  {row['predicted_class']}\n"
            f"{probabilities}   novelty {float(row['novelty']):.1f}   "
            f"S/N {float(row['snr']):.1f}   {flags}"
        )


CONTINUUM_SPAN_AA = (CONTINUUM_BANDS_AA[0][0], CONTINUUM_BANDS_AA[1][1])
"""Where the H-alpha continuum is fitted (vacuum Å), drawn as far as the zoom shows it."""


def measurement_caption(values: Mapping[str, Any]) -> str:
    """The H-alpha panel's caption: EW with its error, profile type, FWHM, peak separation, V/R.

    ``values`` holds `SHOWN_MEASUREMENTS` columns (a catalogue row, or
    `LineMeasurement.as_dict`); numbers that are NaN or missing are left out.
    """

    def number(name: str) -> float:
        try:
            return float(values.get(name, math.nan))
        except (TypeError, ValueError):
            return math.nan

    kind = str(values.get("profile_type") or "unmeasurable")
    if kind == "unmeasurable":
        reason = str(values.get("halpha_flag") or "")
        return f"H-alpha unmeasurable ({reason})" if reason else "H-alpha unmeasurable"
    parts = []
    ew, err = number("halpha_ew_aa"), number("halpha_ew_err_aa")
    if math.isfinite(ew):
        parts.append(f"EW {ew:.2f} ± {err:.2f} Å" if math.isfinite(err) else f"EW {ew:.2f} Å")
    parts.append(kind)
    if math.isfinite(fwhm := number("halpha_fwhm_kms")):
        parts.append(f"FWHM {fwhm:.0f} km/s")
    if math.isfinite(sep := number("halpha_peak_sep_kms")):
        parts.append(f"peaks {sep:.0f} km/s apart")
    if math.isfinite(vr := number("halpha_vr")):
        parts.append(f"V/R {vr:.2f}")
    return "   ".join(parts)


def _draw_all(
    records: list[dict[str, Any]],
    out_dir: Path,
    classes: tuple[str, ...],
    dpi: int,
    *,
    workers: int,
) -> list[str]:
    """Draw every row, in chunks on the job backends (worker processes when there are many);
    per row, in order, the reason it failed or ''."""
    chunks = [records[i : i + GALLERY_CHUNK] for i in range(0, len(records), GALLERY_CHUNK)]
    many = workers > 1 and len(chunks) > 2
    draw = partial(_draw_rows, out_dir=out_dir, classes=classes, dpi=dpi)
    drawn = map_in_order(draw, chunks, workers=workers if many else 1)
    return [problem for problems in drawn for problem in problems]


def _draw_rows(
    rows: list[dict[str, Any]], out_dir: Path, classes: tuple[str, ...], dpi: int
) -> list[str]:
    """Draw ``rows`` into ``out_dir``; per row the reason it failed, or '' when drawn."""
    panels = _Panels()
    problems = []
    for row in rows:
        try:
            panels.draw(row, classes)
            # Whole or absent: a run killed while saving leaves the earlier image as it was.
            image = out_dir / image_name(str(row["id"]), str(row["source"]))
            with atomic_write(image, keep_suffix=True) as tmp:
                panels.fig.savefig(tmp, dpi=dpi)
            problems.append("")
        except (SpectrumError, OSError, ValueError) as exc:
            problems.append(str(exc) or type(exc).__name__)
    return problems


def write_gallery(
    catalogue: pd.DataFrame,
    out_dir: str | Path,
    *,
    max_items: int | None = None,
    dpi: int = 80,
    workers: int = 1,
    log: Callable[[str], None] | None = None,
) -> GallerySummary:
    """Draw one PNG per candidate (highest probability first) and write ``index.html``.

    Parameters
    ----------
    catalogue
        Candidate rows (predictions columns; `spectraldl.catalogue.candidates`).
    out_dir
        Folder to write into (created).
    max_items
        Draw at most this many (all by default); the index says how many were left out.
    dpi
        Resolution of the PNGs.
    workers
        Processes drawing at once (a PNG takes about 0.13 s: thousands of
        candidates are minutes on one core).
    log
        Called with a line per problem and a final line.

    A spectrum whose source file cannot be read is listed in the index with
    the reason, never a crash.
    """
    say = log or (lambda _line: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = classes_in(catalogue.columns)
    rows = catalogue if max_items is None else catalogue.iloc[: max(0, max_items)]
    records = rows.to_dict("records")
    problems = _draw_all(records, out_dir, classes, dpi, workers=workers)
    entries: list[dict[str, Any]] = []
    failed: list[tuple[str, str]] = []
    for row, problem in zip(records, problems, strict=True):
        entry = {c: json_safe(row[c]) for c in catalogue.columns}
        entry["image"] = image_name(str(row["id"]), str(row["source"]))
        if problem:
            failed.append((str(row["id"]), problem))
            entry["image"] = ""
            entry["problem"] = problem
            say(f"gallery: cannot draw {row['id']}: {problem}")
        entries.append(entry)
    index = out_dir / "index.html"
    _write_index(index, entries, classes, total=len(catalogue))
    say(f"gallery: {len(entries) - len(failed)} images and {index}")
    return GallerySummary(
        index=index, images=len(entries) - len(failed), candidates=len(catalogue), failed=failed
    )


DATA_BLOCK = re.compile(r'<script id="data" type="application/json">(.*?)</script>', re.S)
"""The candidates' rows as JSON in a gallery's ``index.html`` (group 1), as its template writes."""


def read_gallery_entries(index: str | Path) -> list[dict[str, Any]]:
    """The candidates of a gallery's ``index.html`` (one dict per row, as `write_gallery` wrote).

    An index without the data block (not written by `write_gallery`) gives ``[]``.
    """
    text = Path(index).read_text(encoding="utf-8", errors="replace")
    found = DATA_BLOCK.search(text)
    if found is None:
        return []
    try:
        entries = json.loads(found.group(1))
    except ValueError:
        return []
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def sample_order(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drawn candidates to show first: real spectra, then the most probable.

    Real spectra (``origin == "real"``) come first because a reader of a demo
    or a mixed run wants to see them; within each part the probability of
    the predicted class decides, highest first, then the id.
    """

    def probability(entry: dict[str, Any]) -> float:
        value = entry.get(probability_column(str(entry.get("predicted_class", ""))))
        return float(value) if isinstance(value, int | float) else float("-inf")

    drawn = [e for e in entries if e.get("image")]
    return sorted(
        drawn, key=lambda e: (e.get("origin") != "real", -probability(e), str(e.get("id")))
    )


_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)
"""The gallery's page templates (``templates/gallery.html``)."""


def _script_json(value: Any) -> str:
    """``value`` as JSON safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` as ``\\u``
    escapes, so no name (``</script>``, ``<!--``) can end the element or run as code."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _write_index(
    path: Path, entries: list[dict[str, Any]], classes: tuple[str, ...], *, total: int
) -> None:
    columns: list[dict[str, Any]] = [
        {"key": "image", "label": "spectrum", "digits": None},
        {"key": "id", "label": "id", "digits": None},
        {"key": "object", "label": "object", "digits": None},
        {"key": "predicted_class", "label": "class", "digits": None},
    ]
    columns += [{"key": probability_column(c), "label": f"p({c})", "digits": 3} for c in classes]
    columns += [
        {"key": "novelty", "label": "novelty", "digits": 2},
        {"key": "quality_flags", "label": "flags", "digits": None},
        {"key": "snr", "label": "S/N", "digits": 1},
        {"key": "ra", "label": "RA (deg)", "digits": 5},
        {"key": "dec", "label": "Dec (deg)", "digits": 5},
    ]
    if entries and "known_name" in entries[0]:
        columns.append({"key": "known_name", "label": "known star", "digits": None})
    shown = len(entries)
    summary = f"{shown} candidates shown" + (
        f" (the {shown} most probable of {total})" if shown < total else ""
    )
    page = _TEMPLATES.get_template("gallery.html").render(
        summary=summary,
        columns=columns,
        data=_script_json(entries),
        columns_json=_script_json(columns),
    )
    with atomic_write(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
