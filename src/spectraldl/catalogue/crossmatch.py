"""Cross-match by position with a list of known emission-line stars: who was found, who not and why.

A known list is a CSV with either a ``designation`` column in the IAU form
LAMOST and SDSS use (``J063259.37+045622.5``, optionally prefixed ``LAMOST``),
or ``ra`` and ``dec`` columns (degrees, or sexagesimal ``hh:mm:ss`` /
``dd:mm:ss``, colons or blanks as SIMBAD writes them); a ``name``/``id`` column
names the stars. Matching uses
astropy's `~astropy.coordinates.SkyCoord.search_around_sky` within a radius,
10 arcsec by default: real positions of one star disagree by more than the
designations' truncation (0.01 s, 0.1 arcsec) suggests. The bundled LAMOST DR1
spectrum of the Be star BT CMi sits 6.4 arcsec from its entry in the list of
known DR1 Be stars, and LAMOST places about one fibre per 20 arcmin^2, so a
chance neighbour within 10 arcsec is rare (separations are reported).
A spectrum whose designation (the ``object`` column, LAMOST's DESIG) equals a
known star's designation matches it whatever the separation: in real LAMOST
DR2 files the header RA/DEC can sit 5-6 arcsec from the position the
designation encodes, and lists of known LAMOST stars are lists of designations.

Each known star ends in one of: ``recovered`` (a spectrum within the radius
is in the catalogue), ``not in the input`` (no spectrum within the radius),
``classified as <class>``, ``filtered by flag <FLAG>`` or ``below min-prob``
(the nearest miss among its spectra, with the numbers in ``reason``).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spectraldl.catalogue.selection import Selection
from spectraldl.core.atomic import atomic_write
from spectraldl.core.errors import NotUTF8Error, decode_utf8, delimiter_hint
from spectraldl.core.quality import flag_names
from spectraldl.io.predictions import probability_column

DEFAULT_RADIUS_ARCSEC = 10.0

_DESIGNATION = re.compile(
    r"^\s*(?:[A-Za-z][\w-]*\s+)?J?\s*"
    r"(?P<rh>\d{2})(?P<rm>\d{2})(?P<rs>\d{2}(?:\.\d*)?)\s*"
    r"(?P<sign>[+-])(?P<dd>\d{2})(?P<dm>\d{2})(?P<ds>\d{2}(?:\.\d*)?)\s*$"
)


_BLANK_SEXAGESIMAL = re.compile(r"[+-]?\d+(?:\.\d*)?(?:\s+\d+(?:\.\d*)?){1,2}")
"""Two or three numbers split by blanks, as SIMBAD writes RA (``08 00 43.3``, hours)."""


class KnownListError(ValueError):
    """A known-star list that cannot be read: names the file and the line."""


def parse_designation(text: str) -> tuple[float, float]:
    """RA and Dec (degrees) of an IAU designation ``Jhhmmss.ss+ddmmss.s``.

    A survey prefix (``LAMOST J...``, ``SDSS J...``) is allowed. Raises
    `ValueError` for anything else.
    """
    match = _DESIGNATION.match(text)
    if match is None:
        raise ValueError(f"not a designation of the form Jhhmmss.ss+ddmmss.s: {text!r}")
    g = match.groupdict()
    ra = 15.0 * (int(g["rh"]) + int(g["rm"]) / 60.0 + float(g["rs"]) / 3600.0)
    dec = int(g["dd"]) + int(g["dm"]) / 60.0 + float(g["ds"]) / 3600.0
    minutes_seconds = (int(g["rm"]), float(g["rs"]), int(g["dm"]), float(g["ds"]))
    if ra >= 360.0 or dec > 90.0 or max(minutes_seconds) >= 60:
        raise ValueError(f"designation out of range: {text!r}")
    return ra, -dec if g["sign"] == "-" else dec


def designation_key(text: str) -> str:
    """The designation in a canonical form (``J063259.37+045622.5``), '' when it is not one."""
    match = _DESIGNATION.match(text or "")
    if match is None:
        return ""
    g = match.groupdict()
    return f"J{g['rh']}{g['rm']}{g['rs']}{g['sign']}{g['dd']}{g['dm']}{g['ds']}"


def _angle(text: str, *, hours: bool, what: str) -> float:
    value = text.strip()
    try:
        return float(value)
    except ValueError:
        pass
    from astropy.coordinates import Angle

    try:
        return float(Angle(value, unit="hourangle" if hours else "deg").deg)
    except ValueError as exc:
        form = "hh:mm:ss" if hours else "dd:mm:ss"
        raise ValueError(f"{what} {value!r} is not degrees nor {form} ({exc})") from None


@dataclass(frozen=True)
class KnownStars:
    """Known emission-line stars: names and ICRS positions (degrees)."""

    names: list[str]
    ra: np.ndarray
    dec: np.ndarray
    source: str = ""
    designations: list[str] = field(default_factory=list)
    """Canonical designations (`designation_key`), '' where the list gives none."""

    def __len__(self) -> int:
        return len(self.names)

    def coords(self) -> object:
        """The positions as an astropy `SkyCoord`."""
        from astropy import units as u
        from astropy.coordinates import SkyCoord

        return SkyCoord(ra=self.ra * u.deg, dec=self.dec * u.deg, frame="icrs")


def read_known(path: str | Path) -> KnownStars:
    """Read a known-star CSV (``designation`` or ``ra``/``dec`` columns; ``name``/``id``).

    UTF-8 (with or without Excel's BOM), comma-separated. Raises
    `KnownListError` naming the file, and the line where there is one, for
    another encoding, a missing column (with a hint when the file is
    separated by semicolons or tabs), a row of another length than the
    header, or a position that cannot be read or is off the sky (RA outside
    0..360 degrees, Dec outside -90..90).
    """
    path = Path(path)
    try:
        text = decode_utf8(path.read_bytes(), path)
    except FileNotFoundError:
        raise KnownListError(f"{path}: no such file") from None
    except OSError as exc:
        raise KnownListError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except NotUTF8Error as exc:
        raise KnownListError(str(exc)) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, [])
        columns = _known_columns(path, header)
        stars = [_known_star(path, reader.line_num, cells, header, columns) for cells in reader]
    except csv.Error as exc:
        raise KnownListError(
            f"{path}, line {reader.line_num}: not a readable CSV ({exc})"
        ) from None
    kept = [star for star in stars if star is not None]
    return KnownStars(
        names=[s[0] for s in kept],
        ra=np.array([s[1] for s in kept], dtype=np.float64),
        dec=np.array([s[2] for s in kept], dtype=np.float64),
        source=str(path),
        designations=[s[3] for s in kept],
    )


def _known_columns(path: Path, header: list[str]) -> dict[str, int]:
    """Index of each (lower-case) column of a known-star list's header; checks it has a position."""
    columns = {f.strip().lower(): i for i, f in enumerate(header)}
    if not ("ra" in columns and "dec" in columns) and "designation" not in columns:
        raise KnownListError(
            f"{path}: needs a 'designation' column (Jhhmmss.ss+ddmmss.s) or 'ra' and 'dec' "
            f"columns; it has {', '.join(h.strip() for h in header) or 'none'}"
            + delimiter_hint(header)
        )
    return columns


def _known_star(
    path: Path, line: int, cells: list[str], header: list[str], columns: dict[str, int]
) -> tuple[str, float, float, str] | None:
    """(name, RA, Dec, designation key) of one row of a known-star list; None for a blank line."""
    if not any(c.strip() for c in cells):
        return None
    extra = cells[len(header) :]
    # A row may leave out trailing cells, not those the list is read by (RA, Dec, a name).
    used = ("ra", "dec", "designation", "name", "id")
    short = any(columns[key] >= len(cells) for key in used if key in columns)
    if short or any(c.strip() for c in extra):
        plural = "" if len(cells) == 1 else "s"
        raise KnownListError(
            f"{path}, line {line}: {len(cells)} field{plural} where the header has "
            f"{len(header)} ({', '.join(h.strip() for h in header)})"
            + (delimiter_hint(cells) or ("; quote values holding commas" if extra else ""))
        )
    try:
        ra, dec = _known_position(cells, columns)
    except (ValueError, TypeError, AttributeError) as exc:
        raise KnownListError(f"{path}, line {line}: {exc}") from None

    def cell(column: str) -> str:
        return cells[columns[column]].strip() if column in columns else ""

    name = next((cell(k) for k in ("name", "id", "designation") if k in columns), "")
    designation = cell("designation")
    if designation and ("name" in columns or "id" in columns):
        name = f"{name} ({designation})" if name else designation
    return name or f"line {line}", ra, dec, designation_key(designation)


def _known_position(cells: list[str], columns: dict[str, int]) -> tuple[float, float]:
    """RA and Dec (degrees) of a known-star row: ``ra``/``dec`` columns, else the designation."""
    if "ra" in columns and "dec" in columns:
        ra_text, dec_text = cells[columns["ra"]].strip(), cells[columns["dec"]].strip()
        if not ra_text or not dec_text:
            raise ValueError(f"no {'RA' if not ra_text else 'Dec'}")
        hours = ":" in ra_text or bool(_BLANK_SEXAGESIMAL.fullmatch(ra_text))
        ra = _angle(ra_text, hours=hours, what="RA")
        dec = _angle(dec_text, hours=False, what="Dec")
    else:
        ra_text = dec_text = cells[columns["designation"]].strip()
        if not ra_text:
            raise ValueError("no designation")
        ra, dec = parse_designation(ra_text)
    if not (math.isfinite(ra) and math.isfinite(dec)):
        raise ValueError("position is not finite")
    if -180.0 <= ra < 0.0:  # catalogues in the -180..180 convention
        ra += 360.0
    if not 0.0 <= ra <= 360.0:
        raise ValueError(f"RA {ra_text} is outside 0..360 degrees (or -180..180)")
    if not -90.0 <= dec <= 90.0:
        raise ValueError(f"Dec {dec_text} is outside -90..90 degrees")
    return ra, dec


@dataclass
class CrossMatch:
    """Per known star: what happened to it. ``table`` has one row per known star."""

    table: pd.DataFrame
    radius_arcsec: float
    known_source: str = ""
    pairs: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Every (known star, catalogue spectrum) pair within the radius: name, id, separation."""

    @property
    def recovered(self) -> int:
        """Known stars with a spectrum in the catalogue."""
        return int((self.table["status"] == "recovered").sum())

    @property
    def in_input(self) -> int:
        """Known stars with at least one spectrum in the predictions."""
        return int((self.table["status"] != "not in the input").sum())

    def status_counts(self) -> dict[str, int]:
        """Known stars per status, most common first."""
        return {str(k): int(v) for k, v in self.table["status"].value_counts().items()}

    def lines(self) -> list[str]:
        """A short report for people."""
        total = len(self.table)
        out = [
            f"known stars: {total} (from {self.known_source or 'the list'}), "
            f"within {self.radius_arcsec:g} arcsec of a classified spectrum: {self.in_input}, "
            f"recovered: {self.recovered}"
            + (
                f" ({self.recovered / self.in_input:.0%} of those in the input)"
                if self.in_input
                else ""
            )
        ]
        for status, n in self.status_counts().items():
            out.append(f"  {status}: {n}")
        missed = self.table[~self.table["status"].isin(["recovered", "not in the input"])]
        for row in missed.itertuples():
            out.append(f"  missed {row.name}: {row.reason}")
        return out

    def write_csv(self, path: str | Path) -> None:
        """Write the per-star table (name, position, status, reason, best spectrum), whole or
        not at all (a run killed while writing leaves the earlier file); probabilities as the
        float32 the predictions hold (0.97, not 0.9700000286102295)."""
        with atomic_write(path) as tmp:
            self.table.astype({"probability": np.float32}).to_csv(tmp, index=False)


def _miss_reason(row: pd.Series, selection: Selection) -> tuple[int, str, str]:
    """(rank, status, reason) of a spectrum not in the catalogue; lower rank = nearer miss."""
    predicted = str(row["predicted_class"])
    if predicted not in selection.classes:
        p = float(row[probability_column(predicted)])
        return 2, f"classified as {predicted}", f"classified as {predicted} (p={p:.2f})"
    p = float(row[probability_column(predicted)])
    excluded = int(row["quality"]) & int(selection.excluding_flags)
    low = p < selection.min_prob
    notes = []
    if excluded:
        notes.append(f"filtered by flag {flag_names(excluded)}")
    if low:
        notes.append(f"below min-prob (p_{predicted}={p:.2f} < {selection.min_prob:g})")
    else:
        notes.append(f"p_{predicted}={p:.2f}")
    status = f"filtered by flag {flag_names(excluded)}" if excluded else "below min-prob"
    return (0 if excluded and not low else 1), status, "; ".join(notes)


_TABLE_COLUMNS = [
    "name",
    "ra",
    "dec",
    "status",
    "reason",
    "n_spectra",
    "id",
    "source",
    "separation_arcsec",
    "predicted_class",
    "probability",
    "quality_flags",
]
_PAIR_COLUMNS = ["known_name", "id", "source", "separation_arcsec"]


def _probability(row: pd.Series) -> float:
    """The probability of a predictions row's predicted class."""
    return float(row[probability_column(str(row["predicted_class"]))])


def _designation_index(known: KnownStars) -> dict[str, list[int]]:
    """Known stars by canonical designation (stars listed by position only are left out)."""
    by_designation: dict[str, list[int]] = {}
    for i, key in enumerate(known.designations):
        if key:
            by_designation.setdefault(key, []).append(i)
    return by_designation


def _block_pairs(
    block: pd.DataFrame,
    known_coords: Any,
    by_designation: dict[str, list[int]],
    radius_arcsec: float,
) -> pd.DataFrame | None:
    """The block's rows near a known star (or named by its designation), one per pair.

    Each row gains ``known_index`` and ``separation_arcsec`` in front; None when
    no row of the block is near a known star.
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    ra = block["ra"].to_numpy(dtype=np.float64)
    dec = block["dec"].to_numpy(dtype=np.float64)
    good = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec))
    pairs: set[tuple[int, int]] = set()
    if len(good):
        coords = SkyCoord(ra=ra[good] * u.deg, dec=dec[good] * u.deg, frame="icrs")
        # Returns indices into the argument (this block) first, then into known_coords.
        idx_block, idx_known, _, _ = known_coords.search_around_sky(
            coords, radius_arcsec * u.arcsec
        )
        pairs.update(zip(idx_known.tolist(), good[idx_block].tolist(), strict=True))
    if by_designation:
        for row, text in enumerate(block["object"].astype(str)):
            for i in by_designation.get(designation_key(text), ()):
                pairs.add((i, row))
    if not pairs:
        return None
    ordered = sorted(pairs, key=lambda pair: (pair[1], pair[0]))
    idx_known_all = np.array([k for k, _ in ordered])
    idx_rows = np.array([r for _, r in ordered])
    rows = block.iloc[idx_rows].copy()
    separation = SkyCoord(
        ra=ra[idx_rows] * u.deg, dec=dec[idx_rows] * u.deg, frame="icrs"
    ).separation(known_coords[idx_known_all])
    rows.insert(0, "known_index", idx_known_all)
    rows.insert(1, "separation_arcsec", separation.to_value(u.arcsec))
    return rows


def _near_spectra(
    known: KnownStars, blocks: Iterable[pd.DataFrame], radius_arcsec: float
) -> pd.DataFrame:
    """Every (known star, spectrum) pair within the radius, streamed over the blocks."""
    known_coords = known.coords()
    by_designation = _designation_index(known)
    matched: list[pd.DataFrame] = []
    for block in blocks:
        if len(block) == 0 or len(known) == 0:
            continue
        rows = _block_pairs(block, known_coords, by_designation, radius_arcsec)
        if rows is not None:
            matched.append(rows)
    return pd.concat(matched, ignore_index=True) if matched else pd.DataFrame()


def _recovered(
    near: pd.DataFrame, chosen: np.ndarray, name: str
) -> tuple[int, str, str, list[dict[str, Any]]]:
    """(best row, status, reason, catalogue pairs) of a known star with candidate spectra."""
    probs = [_probability(near.iloc[j]) for j in chosen]
    best = int(chosen[int(np.argmax(probs))])
    n_in = len(chosen)
    reason = f"in the catalogue ({n_in} spectr{'um' if n_in == 1 else 'a'})"
    pairs = [
        {
            "known_name": name,
            "id": near.iloc[j]["id"],
            "source": near.iloc[j]["source"],
            "separation_arcsec": float(near.iloc[j]["separation_arcsec"]),
        }
        for j in chosen
    ]
    return best, "recovered", reason, pairs


def _nearest_miss(
    near: pd.DataFrame, mine: np.ndarray, selection: Selection
) -> tuple[int, str, str]:
    """(best row, status, reason) of a known star none of whose spectra is a candidate."""
    misses = [(*_miss_reason(near.iloc[j], selection), j) for j in mine]
    _rank, status, reason, best = min(misses, key=lambda m: (m[0], -_probability(near.iloc[m[3]])))
    return best, status, reason


def _star_outcome(
    i: int,
    known: KnownStars,
    near: pd.DataFrame,
    selected: np.ndarray,
    selection: Selection,
    radius_arcsec: float,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The table row of known star ``i`` and its pairs with catalogue spectra."""
    name = known.names[i]
    record: dict[str, Any] = {
        "name": name,
        "ra": known.ra[i],
        "dec": known.dec[i],
        "status": "not in the input",
        "reason": f"no classified spectrum within {radius_arcsec:g} arcsec",
        "n_spectra": 0,
        "id": "",
        "source": "",
        "separation_arcsec": np.nan,
        "predicted_class": "",
        "probability": np.nan,
        "quality_flags": "",
    }
    mine = np.flatnonzero(near["known_index"].to_numpy() == i) if len(near) else np.zeros(0, int)
    if not len(mine):
        return record, []
    record["n_spectra"] = len(mine)
    chosen = mine[selected[mine]]
    pairs: list[dict[str, Any]] = []
    if len(chosen):
        best, status, reason, pairs = _recovered(near, chosen, name)
    else:
        best, status, reason = _nearest_miss(near, mine, selection)
    row = near.iloc[best]
    record.update(
        status=status,
        reason=reason,
        id=row["id"],
        source=row["source"],
        separation_arcsec=float(row["separation_arcsec"]),
        predicted_class=row["predicted_class"],
        probability=_probability(row),
        quality_flags=row["quality_flags"],
    )
    return record, pairs


def crossmatch(
    known: KnownStars,
    blocks: Iterable[pd.DataFrame],
    *,
    selection: Selection,
    radius_arcsec: float = DEFAULT_RADIUS_ARCSEC,
) -> CrossMatch:
    """Find each known star among the predictions and say whether it is a candidate.

    Parameters
    ----------
    known
        The known stars (`read_known`).
    blocks
        The predictions table in blocks (`spectraldl.io.predictions.iter_predictions`);
        streamed, only spectra near a known star are kept.
    selection
        The catalogue's cuts (`spectraldl.catalogue.selection.Selection`).
    radius_arcsec
        Match radius.
    """
    near = _near_spectra(known, blocks, radius_arcsec)
    selected = selection.mask(near) if len(near) else np.zeros(0, bool)
    records = []
    pairs: list[dict[str, Any]] = []
    for i in range(len(known.names)):
        record, star_pairs = _star_outcome(i, known, near, selected, selection, radius_arcsec)
        records.append(record)
        pairs += star_pairs
    return CrossMatch(
        table=pd.DataFrame.from_records(records, columns=_TABLE_COLUMNS),
        radius_arcsec=radius_arcsec,
        known_source=known.source,
        pairs=pd.DataFrame.from_records(pairs, columns=_PAIR_COLUMNS),
    )


def known_columns(catalogue: pd.DataFrame, match: CrossMatch) -> tuple[list[str], np.ndarray]:
    """Per catalogue row: the nearest matched known star's name ('' if none) and separation."""
    best: dict[tuple[str, str], tuple[str, float]] = {}
    for row in match.pairs.itertuples():
        key = (str(row.id), str(row.source))
        current = best.get(key)
        if current is None or row.separation_arcsec < current[1]:
            best[key] = (str(row.known_name), float(row.separation_arcsec))
    keys = list(zip(catalogue["id"].astype(str), catalogue["source"].astype(str), strict=True))
    names = [best.get(k, ("", np.nan))[0] for k in keys]
    seps = np.array([best.get(k, ("", np.nan))[1] for k in keys], dtype=np.float32)
    return names, seps


__all__ = [
    "DEFAULT_RADIUS_ARCSEC",
    "CrossMatch",
    "KnownListError",
    "KnownStars",
    "crossmatch",
    "designation_key",
    "known_columns",
    "parse_designation",
    "read_known",
]
