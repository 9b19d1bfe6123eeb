"""spectraldl candidates: cuts, counts, catalogues, gallery, cross-match on real positions."""

from __future__ import annotations

import codecs
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from classify_helpers import trained_model
from click.testing import CliRunner

from spectraldl.catalogue.candidates import (
    Counts,
    Selection,
    find_candidates,
    fits_text,
    write_catalogue,
)
from spectraldl.catalogue.crossmatch import (
    KnownListError,
    KnownStars,
    crossmatch,
    parse_designation,
    read_known,
)
from spectraldl.classify.run import classify
from spectraldl.cli import main
from spectraldl.io.archives import read_spectrum
from spectraldl.io.bundled import bundled_files
from spectraldl.io.predictions import column_spec, conform, read_predictions
from spectraldl.jobs.files import output_lock

CLASSES = ("emission", "absorption", "double-peak")
BE_STARS = Path("/work/shared/data/labels/lamost-ml_lamost-dr1-be-stars.csv")


def _frame(rows: list[dict]) -> pd.DataFrame:
    """A predictions table from a few hand-written rows (defaults for the rest)."""
    records = []
    for i, row in enumerate(rows):
        p = row.get("p", (0.1, 0.8, 0.1))
        record = {
            "id": row.get("id", f"s{i}"),
            "source": row.get("source", f"/nowhere/s{i}.fits"),
            "archive": "lamost",
            "object": f"LAMOST J{i:06d}",
            "ra": row.get("ra", 10.0 + i),
            "dec": row.get("dec", 20.0),
            "mjd": 55000.0,
            "snr": 30.0,
            "predicted_class": CLASSES[int(np.argmax(p))],
            "p_emission": p[0],
            "p_absorption": p[1],
            "p_double_peak": p[2],
            "quality": row.get("quality", 0),
            "quality_flags": "",
            "novelty": row.get("novelty", 1.0),
            "model_id": "m",
        }
        records.append(record)
    return conform(pd.DataFrame(records), CLASSES)


def test_the_cuts_follow_class_probability_and_flags() -> None:
    frame = _frame(
        [
            {"p": (0.95, 0.03, 0.02)},  # 0 emission, clean: in
            {"p": (0.95, 0.03, 0.02), "quality": 32},  # 1 NOVEL: out unless flagged allowed
            {"p": (0.95, 0.03, 0.02), "quality": 8},  # 2 LOW_SNR: out unless flagged allowed
            {"p": (0.95, 0.03, 0.02), "quality": 4},  # 3 MASKED (ivar=0 at the peak): in
            {"p": (0.02, 0.03, 0.95), "quality": 16},  # 4 double-peak, partial coverage: in
            {"p": (0.80, 0.15, 0.05)},  # 5 below 0.9: out
            {"p": (0.03, 0.95, 0.02)},  # 6 absorption: out
        ]
    )
    assert list(np.flatnonzero(Selection().mask(frame))) == [0, 3, 4]
    flagged = Selection(include_flagged=True)
    assert list(np.flatnonzero(flagged.mask(frame))) == [0, 1, 2, 3, 4]
    loose = Selection(min_prob=0.5, classes=("emission",))
    assert list(np.flatnonzero(loose.mask(frame))) == [0, 3, 5]
    counts = Counts(selection=Selection(), classes=CLASSES)
    counts.add(frame.iloc[:4])
    counts.add(frame.iloc[4:])
    rows = {r["name"]: r for r in counts.rows()}
    assert rows["emission"]["spectra"] == 5 and rows["emission"]["p_ge_min"] == 4
    assert rows["emission"]["candidates"] == 2
    assert rows["double-peak"]["candidates"] == 1 and rows["absorption"]["candidates"] is None
    assert rows["total"]["spectra"] == 7 and rows["total"]["candidates"] == 3
    assert rows["NOVEL"]["spectra"] == 1 and rows["NOVEL"]["candidates"] == "excluded"
    assert rows["MASKED"]["candidates"] == "kept"
    text = counts.table()
    assert re.search(r"emission\s+5\s+71\.43\s+4\s+2", text), text


def test_a_class_the_model_does_not_predict_is_refused() -> None:
    frame = _frame([{"p": (0.95, 0.03, 0.02)}])
    with pytest.raises(ValueError, match="noise"):
        find_candidates(frame, selection=Selection(classes=("emission", "noise")))


@pytest.mark.parametrize("suffix", [".csv", ".ecsv", ".fits", ".vot"])
def test_the_catalogue_opens_in_astropy_with_units_and_descriptions(
    tmp_path: Path, suffix: str
) -> None:
    from astropy.table import Table

    frame = _frame([{"p": (0.95, 0.03, 0.02), "source": "/data/dr1/ř-05.fits"}, {}])
    out = tmp_path / f"cat{suffix}"
    write_catalogue(frame, out, meta={"min_prob": 0.9})
    table = Table.read(out, format="csv") if suffix == ".csv" else Table.read(out)
    assert table.colnames == list(column_spec(CLASSES))
    assert [str(v) for v in table["source"]] == list(frame["source"])
    np.testing.assert_allclose(table["ra"], frame["ra"])
    if suffix != ".csv":
        assert str(table["ra"].unit) == "deg"
    if suffix in (".ecsv", ".vot"):
        assert "Right ascension" in table["ra"].description
    if suffix == ".vot":
        from astropy.io.votable import parse

        fields = {f.name: f for f in parse(str(out)).get_first_table().fields}
        assert fields["ra"].ucd == "pos.eq.ra;meta.main" and fields["ra"].unit == "deg"
        assert "probability" in fields["p_emission"].description.lower()
    if suffix == ".fits":
        from astropy.io import fits

        header = fits.getheader(out, 1)
        index = table.colnames.index("dec") + 1
        assert header[f"TUNIT{index}"] == "deg" and header[f"TUCD{index}"].startswith("pos.eq.dec")
        assert "Declination" in header[f"TCOMM{index}"]


# --- designations and known lists ----------------------------------------------------------


def test_designations_parse_as_astropy_reads_sexagesimal() -> None:
    from astropy.coordinates import SkyCoord

    for text, sexagesimal in [
        ("J063259.37+045622.5", "06h32m59.37s +04d56m22.5s"),
        ("LAMOST J080043.30-025243.9", "08h00m43.30s -02d52m43.9s"),
        ("J000012.00-000001.0", "00h00m12.00s -00d00m01.0s"),
    ]:
        ra, dec = parse_designation(text)
        expected = SkyCoord(sexagesimal)
        assert abs(ra - expected.ra.deg) < 1e-9 and abs(dec - expected.dec.deg) < 1e-9
    for bad in ("J063259+0456", "063299.00+045622.5", "K01"):
        with pytest.raises(ValueError):
            parse_designation(bad)


def test_real_lamost_designations_and_header_positions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    spectra = [read_spectrum(f.path) for f in bundled_files(archive="lamost")]
    spectra = [s for s in spectra if s.meta.designation]
    assert len(spectra) > 50
    parsed = np.array([parse_designation(s.meta.designation) for s in spectra])
    header = SkyCoord([s.meta.ra for s in spectra] * u.deg, [s.meta.dec for s in spectra] * u.deg)
    separation = header.separation(SkyCoord(parsed[:, 0] * u.deg, parsed[:, 1] * u.deg)).arcsec
    # Designations truncate to 0.01 s and 0.1 arcsec: almost all within half an arcsecond ...
    assert np.median(separation) < 0.2 and (separation < 0.5).mean() > 0.95
    # ... but two real DR2 files put their header RA/DEC 4-6 arcsec from their designation.
    far = [s for s, sep in zip(spectra, separation, strict=True) if sep > 3.0]
    assert {s.id for s in far} == {"spec-55916-B5591606_sp01-001", "spec-55919-B5591903_sp01-001"}
    # Such a star is still found through its designation, even with a 3 arcsec radius.
    rows = [{"id": s.id, "ra": s.meta.ra, "dec": s.meta.dec, "p": (0.97, 0.02, 0.01)} for s in far]
    frame = _frame(rows)
    frame["object"] = [s.meta.designation for s in far]
    known = tmp_path / "known.csv"
    known.write_text(
        "id,designation\n" + "".join(f"K{i},{s.meta.designation[7:]}\n" for i, s in enumerate(far))
    )
    match = crossmatch(read_known(known), [frame], selection=Selection(), radius_arcsec=3.0)
    assert list(match.table["status"]) == ["recovered", "recovered"]
    assert (match.table["separation_arcsec"] > 3.0).all()
    # The per-star table is written whole or not at all: a failed rewrite keeps the earlier.
    out = tmp_path / "c.known.csv"
    match.write_csv(out)
    written = out.read_bytes()
    assert written.startswith(b"name,")
    assert list(pd.read_csv(out, dtype=str)["probability"]) == ["0.97", "0.97"]

    class Full(OSError):
        """No space left."""

    def half_then_full(frame: pd.DataFrame, path: Any, **_: Any) -> None:
        Path(path).write_bytes(written[:40])
        raise Full

    with monkeypatch.context() as patched:
        patched.setattr(pd.DataFrame, "to_csv", half_then_full)
        with pytest.raises(Full):
            match.write_csv(out)
    assert out.read_bytes() == written and [p.name for p in tmp_path.glob("*c.known*")] == [
        "c.known.csv"
    ]


def test_known_lists_with_designations_or_ra_dec(tmp_path: Path) -> None:
    be = read_known(BE_STARS)
    assert len(be) == 203 and be.names[0] == "K01 (J063259.37+045622.5)"
    assert abs(be.ra[0] - 98.2473750) < 1e-6 and abs(be.dec[0] - 4.9395833) < 1e-6
    radec = tmp_path / "radec.csv"
    radec.write_text("name,ra,dec\nstar A,98.247375,4.939583\nstar B,06:32:59.37,+04:56:22.5\n")
    stars = read_known(radec)
    assert stars.names == ["star A", "star B"]
    np.testing.assert_allclose(stars.ra, [98.247375, 98.247375], atol=1e-6)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,designation\nK1,J063259.37+045622.5\nK2,nonsense\n")
    with pytest.raises(KnownListError, match="line 3"):
        read_known(bad)
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("id,name\n1,x\n")
    with pytest.raises(KnownListError, match="designation"):
        read_known(nocol)


@pytest.mark.parametrize(
    ("drop", "option"),
    [
        ("id", ""),
        ("predicted_class", ""),
        ("quality", ""),
        ("ra", "--known"),
        ("dec", "--known"),
        ("source", "--known"),
        ("source", "--gallery"),
        ("object", "--gallery"),
    ],
)
def test_a_table_lacking_a_column_the_command_needs_is_named(
    tmp_path: Path, drop: str, option: str
) -> None:
    table = tmp_path / "preds.csv"
    _frame([{"p": (0.95, 0.03, 0.02)}, {}]).drop(columns=[drop]).to_csv(table, index=False)
    known = tmp_path / "known.csv"
    known.write_text("name,ra,dec\nA,10,20\n")
    extra = {
        "": [],
        "--known": ["--known", str(known)],
        "--gallery": ["--gallery", str(tmp_path / "g")],
    }
    args = ["candidates", str(table), "-o", str(tmp_path / "c.csv"), *extra[option]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert f"preds.csv: not a predictions table: lacks column {drop}\n" in result.output
    assert isinstance(result.exception, SystemExit)
    assert not (tmp_path / "c.csv").exists() and not (tmp_path / "c.known.csv").exists()
    if option:  # without the option that reads it, the column is not needed
        args = ["candidates", str(table), "-o", str(tmp_path / "c.csv")]
        assert CliRunner().invoke(main, args).exit_code == 0


def test_a_semicolon_table_or_one_without_probabilities_is_not_a_predictions_table(
    tmp_path: Path,
) -> None:
    frame = _frame([{"p": (0.95, 0.03, 0.02)}])
    semicolon = tmp_path / "semicolon.csv"
    frame.to_csv(semicolon, index=False, sep=";")
    foreign = tmp_path / "foreign.parquet"
    frame.drop(columns=[c for c in frame.columns if c.startswith("p_")]).to_parquet(foreign)
    for path, hint in ((semicolon, "separated by semicolons"), (foreign, "p_<class>")):
        result = CliRunner().invoke(main, ["candidates", str(path)])
        assert result.exit_code == 1
        assert f"{path.name}: not a predictions table: lacks column" in result.output
        assert hint in result.output


def test_a_column_spectraldl_does_not_define_goes_into_every_catalogue(tmp_path: Path) -> None:
    frame = _frame([{"p": (0.95, 0.03, 0.02)}, {"p": (0.9, 0.0, 0.1)}])
    frame = frame.assign(field="north", exposure=np.array([600.0, 1200.0]))
    outs = [tmp_path / f"c.{suffix}" for suffix in ("csv", "ecsv", "fits", "vot")]
    find_candidates(frame, outs)
    from astropy.table import Table

    for out in outs:
        table = Table.read(out, format="csv") if out.suffix == ".csv" else Table.read(out)
        assert list(table["exposure"]) == [600.0, 1200.0], out
        assert [str(v) for v in table["field"]] == ["north", "north"], out


def test_a_fits_catalogue_of_a_table_with_a_non_ascii_or_long_name_is_written(
    tmp_path: Path,
) -> None:
    folder = tmp_path / ("prédictions ř " + "x" * 80)
    folder.mkdir()
    table = folder / "dr1 é.csv"
    _frame([{"p": (0.95, 0.03, 0.02)}]).to_csv(table, index=False)
    out = tmp_path / "c.fits"
    result = CliRunner().invoke(
        main, ["candidates", str(table), "-o", str(out), "-o", str(tmp_path / "c.vot")]
    )
    assert result.exit_code == 0, result.output
    from astropy.io import fits

    with fits.open(out) as hdul:
        written = hdul["CANDIDATES"].header["SOURCE"]
    assert written.isascii() and "pr\\xe9dictions \\u0159 " in written
    assert codecs.decode(written, "unicode_escape") == str(table)
    assert fits_text("a\tb\udce9") == "a\\tb\\udce9"
    windows = "C:\\new\\ř.csv"  # a backslash before n is not a newline on the way back
    assert codecs.decode(fits_text(windows), "unicode_escape") == windows


@pytest.mark.parametrize(
    ("text", "encoding", "message"),
    [
        (
            "name,ra,dec\nétoile,10.5,20.1\n",
            "latin-1",
            r"stars\.csv: not UTF-8 text: byte 12 \(0xe9\)",
        ),
        ("name,ra,dec\nA,10.5,20.1\n", "utf-16", r"stars\.csv: not UTF-8 text \(UTF-16"),
        ("name,ra,dec\nA,10.5,120.1\n", "utf-8", r"line 2: Dec 120\.1 is outside -90\.\.90"),
        ("name,ra,dec\nA,-190,20\n", "utf-8", r"line 2: RA -190 is outside 0\.\.360"),
        ("name,ra,dec\nA,25:00:00,20\n", "utf-8", r"line 2: RA '25:00:00' is not .*hours"),
        ("name,ra,dec\nA,10,20\n\nB\n", "utf-8", r"line 4: 1 field where the header has 3"),
        ("name,ra,dec\nA,10,20,x\n", "utf-8", r"line 2: 4 fields .*quote values"),
        ("name,ra,dec\nA,,20\n", "utf-8", r"line 2: no RA"),
        ("name,ra,dec\nA,abc,20\n", "utf-8", r"line 2: RA 'abc' is not degrees nor dd:mm:ss"),
        ("name;ra;dec\nA;10;20\n", "utf-8", r"it has name;ra;dec \(.*separated by semicolons"),
    ],
)
def test_a_bad_known_list_names_the_file_the_line_and_the_problem(
    tmp_path: Path, text: str, encoding: str, message: str
) -> None:
    known = tmp_path / "stars.csv"
    known.write_bytes(text.encode(encoding))
    with pytest.raises(KnownListError, match=message):
        read_known(known)


def test_known_positions_on_the_edges_of_the_sky_are_read(tmp_path: Path) -> None:
    known = tmp_path / "edges.csv"
    known.write_text("name,ra,dec,notes\nA,0,-90,\nB,360,90,\nC,-10,0\n\n", encoding="utf-8-sig")
    stars = read_known(known)  # C leaves out its last cell and gives RA in -180..180
    assert stars.names == ["A", "B", "C"]
    np.testing.assert_array_equal(stars.dec, [-90.0, 90.0, 0.0])
    assert stars.ra[2] == 350.0


def test_a_sexagesimal_ra_with_blanks_is_read_in_hours_as_simbad_writes_it(tmp_path: Path) -> None:
    known = tmp_path / "simbad.csv"
    known.write_text(
        "name,ra,dec\nBT CMi,07 57 04.21,+02 56 55.6\ncolons,07:57:04.21,+02:56:55.6\n"
        "degrees,119.2675417,2.9487778\n",
        encoding="utf-8",
    )
    stars = read_known(known)
    np.testing.assert_allclose(stars.ra, [119.2675417] * 3, atol=1e-6)
    np.testing.assert_allclose(stars.dec, [2.9487778] * 3, atol=1e-6)


# --- on real spectra -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_predictions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Predictions of the tiny model on every bundled real LAMOST spectrum."""
    folder = tmp_path_factory.mktemp("candidates")
    model = trained_model(folder)
    out = folder / "predictions.parquet"
    classify(model, [f.path for f in bundled_files(archive="lamost")], out)
    return out


def _known_from(frame: pd.DataFrame, path: Path) -> Path:
    """A known list: the designations of some real spectra plus the real DR1 Be star list."""
    lines = BE_STARS.read_text().strip().splitlines()
    for i, row in enumerate(frame.itertuples()):
        lines.append(f"T{i},{row.object.removeprefix('LAMOST ')}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _by_id(table: pd.DataFrame) -> pd.DataFrame:
    """The per-star table indexed by the list's id (names read ``T0 (J063715.90+271356.5)``)."""
    return table.set_index(table["name"].str.split(" ").str[0])


def test_crossmatch_says_who_was_found_and_why_the_others_were_missed(
    real_predictions: Path, tmp_path: Path
) -> None:
    table = read_predictions(real_predictions)
    table = table[table["object"].str.startswith("LAMOST J")].reset_index(drop=True)
    # Real positions; the class and flags of four spectra are set to cover every outcome.
    picked = table.iloc[:4].copy()
    p = np.array(
        [
            [0.97, 0.02, 0.01],  # recovered
            [0.10, 0.85, 0.05],  # classified as absorption
            [0.95, 0.03, 0.02],  # filtered by flag NOVEL
            [0.60, 0.30, 0.10],  # below min-prob
        ],
        np.float32,
    )
    picked[["p_emission", "p_absorption", "p_double_peak"]] = p
    picked["predicted_class"] = ["emission", "absorption", "emission", "emission"]
    picked["quality"] = [0, 0, 32, 0]
    picked["quality_flags"] = ["", "", "NOVEL", ""]
    known = _known_from(picked, tmp_path / "known.csv")
    stars = read_known(known)
    match = crossmatch(stars, [table.iloc[4:], picked], selection=Selection())
    by_name = _by_id(match.table)
    assert by_name.loc["T0", "status"] == "recovered"
    assert by_name.loc["T0", "id"] == picked.iloc[0]["id"]
    assert by_name.loc["T0", "separation_arcsec"] < 0.5
    assert by_name.loc["T1", "status"] == "classified as absorption"
    assert "p=0.85" in by_name.loc["T1", "reason"]
    assert by_name.loc["T2", "status"] == "filtered by flag NOVEL"
    assert by_name.loc["T3", "status"] == "below min-prob"
    assert "0.60 < 0.9" in by_name.loc["T3", "reason"]
    # Of the 203 real DR1 Be stars one is among the bundled spectra: BT CMi (K20), whose
    # LAMOST spectrum lies 6.4 arcsec from the list's position; the rest are not in the input.
    be = _by_id(match.table[~match.table["name"].str.startswith("T")])
    assert len(be) == 203
    assert set(be.drop(index="K20")["status"]) == {"not in the input"}
    assert be.loc["K20", "id"] == "spec-56342-GAC121N02V2_sp14-101"
    assert 6.0 < be.loc["K20", "separation_arcsec"] < 7.0
    assert be.loc["K20", "status"] != "not in the input"
    assert match.in_input == 5
    assert any("missed T1" in line for line in match.lines())
    # With the flag filter off, the NOVEL one is recovered too.
    loose = crossmatch(stars, [picked], selection=Selection(include_flagged=True))
    assert _by_id(loose.table).loc["T2", "status"] == "recovered"


def test_a_star_with_several_spectra_is_recovered_when_any_one_is_a_candidate() -> None:
    frame = _frame(
        [
            {"p": (0.10, 0.85, 0.05), "ra": 100.0, "dec": 10.0, "id": "a"},
            {"p": (0.96, 0.02, 0.02), "ra": 100.0002, "dec": 10.0, "id": "b"},
            {"p": (0.96, 0.02, 0.02), "ra": 100.01, "dec": 10.0, "id": "far"},
        ]
    )
    stars = KnownStars(names=["X"], ra=np.array([100.0]), dec=np.array([10.0]))
    match = crossmatch(stars, [frame], selection=Selection(), radius_arcsec=5.0)
    row = match.table.iloc[0]
    assert row["status"] == "recovered" and row["id"] == "b" and row["n_spectra"] == 2


def test_gallery_draws_real_spectra_and_an_offline_sortable_index(
    real_predictions: Path, tmp_path: Path
) -> None:
    table = read_predictions(real_predictions).iloc[:4].copy()
    missing = table.iloc[:1].copy()
    missing["id"] = "gone"
    missing["source"] = str(tmp_path / "moved-away.fits")
    catalogue = pd.concat([table, missing], ignore_index=True)
    from spectraldl.catalogue.gallery import write_gallery

    summary = write_gallery(catalogue, tmp_path / "gallery")
    assert summary.images == 4 and summary.candidates == 5
    assert summary.failed and summary.failed[0][0] == "gone"
    pngs = sorted((tmp_path / "gallery").glob("*.png"))
    assert len(pngs) == 4
    import matplotlib.image

    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width, _ = matplotlib.image.imread(png).shape
        assert width > 2 * height > 300
    page = (tmp_path / "gallery" / "index.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page and "<script src" not in page
    data = json.loads(re.search(r'<script id="data"[^>]*>(.*?)</script>', page, re.S).group(1))
    assert [d["id"] for d in data] == list(catalogue["id"])
    assert {d["image"] for d in data if d["image"]} == {p.name for p in pngs}
    assert "moved-away.fits" in data[-1]["problem"]
    assert "novelty" in page and "p(emission)" in page and "addEventListener" in page


def test_gallery_drawn_by_several_processes_equals_one(
    real_predictions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import spectraldl.catalogue.gallery as gallery

    table = read_predictions(real_predictions).iloc[:6].copy()
    table.loc[table.index[2], "source"] = str(tmp_path / "moved-away.fits")
    one = gallery.write_gallery(table, tmp_path / "one")
    monkeypatch.setattr(gallery, "GALLERY_CHUNK", 2)
    several = gallery.write_gallery(table, tmp_path / "several", workers=2)
    assert several.images == one.images == 5
    assert several.failed == one.failed and len(one.failed) == 1
    names = sorted(p.name for p in (tmp_path / "one").glob("*.png"))
    assert names == sorted(p.name for p in (tmp_path / "several").glob("*.png"))
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "several" / name).read_bytes()


def test_candidates_command_end_to_end(real_predictions: Path, tmp_path: Path) -> None:
    table = read_predictions(real_predictions)
    known = _known_from(table.iloc[:3], tmp_path / "known.csv")
    out = tmp_path / "out"
    out.mkdir()
    args = [
        "candidates",
        str(real_predictions),
        "-o",
        str(out / "candidates.csv"),
        "-o",
        str(out / "candidates.fits"),
        "-o",
        str(out / "candidates.vot"),
        "-o",
        f"{out}/./candidates.csv",  # one file named twice: one lock, not a clash with itself
        "--min-prob",
        "0.0",
        "--include-flagged",
        "--gallery",
        str(out / "gallery"),
        "--gallery-max",
        "3",
        "--known",
        str(known),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    expected = table[table["predicted_class"].isin(["emission", "double-peak"])]
    from astropy.table import Table

    for name in ("candidates.csv", "candidates.fits", "candidates.vot"):
        path = out / name
        cat = Table.read(path, format="csv") if name.endswith(".csv") else Table.read(path)
        assert len(cat) == len(expected)
        assert "known_name" in cat.colnames
    assert len(list((out / "gallery").glob("*.png"))) == min(3, len(expected))
    assert not list(tmp_path.rglob("*.lock")), "the locks go with the run"
    known_csv = pd.read_csv(out / "candidates.known.csv")
    assert len(known_csv) == 203 + 3
    assert "predicted class" in result.output and "quality flag" in result.output
    assert "known stars: 206" in result.output and "within 10 arcsec" in result.output
    in_catalogue = set(expected["id"])
    for i in range(3):
        status = _by_id(known_csv).loc[f"T{i}", "status"]
        assert (status == "recovered") == (table.iloc[i]["id"] in in_catalogue), status


def test_candidates_command_errors_are_clear(real_predictions: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main, ["candidates", str(real_predictions), "-o", str(tmp_path / "c.txt")]
    )
    assert result.exit_code == 1 and "unknown catalogue format" in result.output
    result = runner.invoke(main, ["candidates", str(real_predictions), "--classes", "flare"])
    assert result.exit_code == 2 and "flare" in result.output and "--classes" in result.output
    broken = tmp_path / "broken.parquet"
    shutil.copy(real_predictions, broken)
    broken.write_bytes(broken.read_bytes()[:100])
    result = runner.invoke(main, ["candidates", str(broken)])
    assert result.exit_code == 1 and "broken.parquet" in result.output
    nowhere = tmp_path / "missing-folder" / "c.csv"  # a write that fails: one line, no traceback
    result = runner.invoke(main, ["candidates", str(real_predictions), "-o", str(nowhere)])
    assert result.exit_code == 1 and "missing-folder" in result.output
    assert "No such file or directory" in result.output and result.exc_info[0] is SystemExit
    assert not nowhere.parent.exists()


def test_no_output_is_written_over_an_input(real_predictions: Path, tmp_path: Path) -> None:
    """-o naming the predictions table, or a first catalogue whose ``.known.csv`` is the
    known-stars list, is refused before anything is written (both were overwritten)."""
    predictions = tmp_path / "p.parquet"
    shutil.copy(real_predictions, predictions)
    known = tmp_path / "be.known.csv"
    known.write_text("name,ra,dec\nstar,10.0,20.0\n")
    runner = CliRunner()
    result = runner.invoke(main, ["candidates", str(predictions), "-o", str(predictions)])
    assert result.exit_code == 1 and "is also an input" in result.output
    result = runner.invoke(
        main,
        ["candidates", str(predictions), "-o", str(tmp_path / "be.csv"), "--known", str(known)],
    )
    assert result.exit_code == 1 and "be.known.csv: is also an input" in result.output
    assert known.read_text() == "name,ra,dec\nstar,10.0,20.0\n"
    assert predictions.read_bytes() == real_predictions.read_bytes()
    assert not (tmp_path / "be.csv").exists()


# --- one run per output -------------------------------------------------------------------


@pytest.mark.parametrize("held", ["catalogue", "known.csv", "gallery"])
def test_a_second_run_on_an_output_another_run_writes_is_refused_and_touches_nothing(
    real_predictions: Path, tmp_path: Path, held: str
) -> None:
    """This process holds one output's lock as a first run would; a real second
    `candidates` process on the same outputs stops at once with one line naming it, and
    leaves every file of the first run as it was (its half-written temporary too)."""
    known = _known_from(read_predictions(real_predictions).iloc[:3], tmp_path / "be.csv")
    out, gallery = tmp_path / "run" / "c.csv", tmp_path / "run" / "gallery"
    gallery.mkdir(parents=True)
    first = {
        out: b"the first run's catalogue\n",
        out.with_name(".c.csv.tmp"): b"the first run's catalogue, half written",
        out.with_name(".c.fits.tmp"): b"SIMPLE  =",
        out.with_name("c.known.csv"): b"the first run's cross-match\n",
        gallery / "index.html": b"the first run's gallery",
    }
    for path, data in first.items():
        path.write_bytes(data)
    locked = {"catalogue": out, "known.csv": out.with_name("c.known.csv"), "gallery": gallery}
    args = ["-o", str(out), "-o", str(out.with_suffix(".fits")), "--known", str(known)]
    args += ["--gallery", str(gallery), "--gallery-max", "1", "--min-prob", "0"]
    with output_lock(locked[held]):
        second = subprocess.run(
            [sys.executable, "-m", "spectraldl.cli", "candidates", str(real_predictions), *args],
            capture_output=True,
            text=True,
            check=False,
        )
    assert second.returncode == 1, second.stdout + second.stderr
    assert second.stdout == ""
    (line,) = second.stderr.splitlines()
    busy = f"{locked[held]} is being written by another run (pid {os.getpid()} on "
    assert line.startswith(f"Error: {busy}"), line
    assert all(path.read_bytes() == data for path, data in first.items())
    assert sorted((tmp_path / "run").rglob("*")) == sorted([*first, gallery])


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--radius-arcsec", "-5"),
        ("--radius-arcsec", "nan"),
        ("--radius-arcsec", "0"),
        ("--radius-arcsec", "1e9"),
        ("--gallery-max", "-1"),
        ("--gallery-max", "0"),
        ("--min-ew", "nan"),
        ("--min-ew", "inf"),
        ("--min-prob", "nan"),
        ("--classes", ""),
        ("--classes", " , "),
        ("--classes", "flare"),
        ("--profile-type", ","),
        ("--workers", "0"),
    ],
)
def test_meaningless_options_are_usage_errors_naming_the_option(
    tmp_path: Path, option: str, value: str
) -> None:
    """No silent default classes, no all-but-one gallery, no cross-match that matches anything."""
    table = tmp_path / "p.csv"
    table.write_text("id\n")
    result = CliRunner().invoke(main, ["candidates", str(table), option, value])
    assert result.exit_code == 2, result.output
    assert "Invalid value for" in result.output and option in result.output
    assert "Traceback" not in result.output


def test_classes_by_code_alias_or_case_select_the_same_candidates(real_predictions: Path) -> None:
    runner = CliRunner()
    plain = runner.invoke(main, ["candidates", str(real_predictions), "--min-prob", "0"])
    spelled = runner.invoke(
        main, ["candidates", str(real_predictions), "--min-prob", "0", "--classes", "0,Double_Peak"]
    )
    assert plain.exit_code == 0 and spelled.exit_code == 0, plain.output + spelled.output
    counts = [re.search(r"(\d+) candidates", r.output) for r in (plain, spelled)]
    assert counts[0] and counts[1] and counts[0].group(1) == counts[1].group(1)


def test_too_many_workers_are_lowered_once_with_a_note(real_predictions: Path) -> None:
    """-j 100000 would start as many processes; it is capped at 4 per usable core."""
    from spectraldl.jobs.processes import usable_cores

    result = CliRunner().invoke(main, ["candidates", str(real_predictions), "-j", "100000"])
    assert result.exit_code == 0, result.output
    note = f"--workers 100000 is more than 4 per usable core ({usable_cores()} here): using "
    assert result.stderr.count(note) == 1
    assert result.stderr.count(f"{note}{4 * usable_cores()}") == 1
