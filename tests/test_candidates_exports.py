"""spectraldl candidates' files: the provenance every format records, and strict VOTables."""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from classify_helpers import trained_model
from click.testing import CliRunner

from spectraldl import __version__
from spectraldl.catalogue.candidates import (
    CATALOGUE_META,
    KNOWN_COLUMNS,
    Selection,
    find_candidates,
)
from spectraldl.classify.run import classify
from spectraldl.cli import main
from spectraldl.io.bundled import bundled_files
from spectraldl.io.predictions import (
    column_spec,
    metadata_path,
    read_metadata,
    read_predictions,
    write_predictions,
)

SUFFIXES = ("csv", "ecsv", "fits", "vot")
BE_STARS = Path("/work/shared/data/labels/lamost-ml_lamost-dr1-be-stars.csv")


@pytest.fixture(scope="module")
def int8_predictions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Predictions of the tiny model, run in int8, on every bundled real LAMOST spectrum."""
    folder = tmp_path_factory.mktemp("exports")
    out = folder / "predictions.parquet"
    lamost = [f.path for f in bundled_files(archive="lamost")]
    classify(trained_model(folder), lamost, out, precision="int8")
    return out


def _provenance(path: Path) -> dict[str, str]:
    """The provenance a catalogue records, as text, read as its format is read by others."""
    from astropy.io import fits
    from astropy.io.votable import parse
    from astropy.table import Table

    if path.suffix == ".csv":
        found = json.loads(metadata_path(path).read_text(encoding="utf-8"))
    elif path.suffix == ".ecsv":
        found = dict(Table.read(path).meta)
    elif path.suffix == ".vot":
        found = {info.name: info.value for info in parse(str(path)).resources[0].infos}
    else:
        header = fits.getheader(path, "CANDIDATES")
        found = {
            key: codecs.decode(value, "unicode_escape") if isinstance(value, str) else value
            for key, (keyword, _) in CATALOGUE_META.items()
            if (value := header.get(keyword)) is not None
        }
    return {key: str(value) for key, value in found.items() if key != "description"}


def test_every_catalogue_format_records_the_same_provenance(
    int8_predictions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(int8_predictions.parent)  # the table named as a user in its folder would
    outs = [tmp_path / f"c.{suffix}" for suffix in SUFFIXES]
    args = ["candidates", int8_predictions.name, "--min-prob", "0.5", "--min-ew", "1"]
    args += ["--profile-type", "emission,double-peak"]
    result = CliRunner().invoke(main, [*args, *(f"-o{out}" for out in outs)])
    assert result.exit_code == 0, result.output
    expected = {
        "classes": "emission,double-peak",
        "min_prob": "0.5",
        "incflag": "0",
        "min_ew": "1.0",
        "proftype": "emission,double-peak",
        "model_id": str((read_metadata(int8_predictions) or {})["model_id"]),
        "precision": "int8",
        "spectraldl_version": __version__,
        "predictions_version": __version__,
        "source": str(int8_predictions.resolve()),
    }
    assert set(expected) == set(CATALOGUE_META)
    for out in outs:
        assert _provenance(out) == expected, out


def _check_ucds(ucds: dict[str, str], where: Path | str) -> None:
    """Every UCD is valid UCD1+ (astropy's check, with the controlled vocabulary)."""
    from astropy.io.votable.ucd import check_ucd

    bad = {name: ucd for name, ucd in ucds.items() if not check_ucd(ucd, True)}
    assert not bad, f"{where}: invalid UCDs {bad}"


def test_every_exported_votable_parses_strictly_and_every_ucd_is_valid(
    int8_predictions: Path, tmp_path: Path
) -> None:
    from astropy.io import fits
    from astropy.io.votable import parse
    from astropy.table import Table

    _check_ucds({n: i.ucd for n, i in {**column_spec(CLASSES), **KNOWN_COLUMNS}.items()}, "spec")
    known = tmp_path / "known.csv"
    designations = read_predictions(int8_predictions)["object"].str.removeprefix("LAMOST ")
    known.write_text(
        BE_STARS.read_text() + "".join(f"T{i},{d}\n" for i, d in enumerate(designations[:3]))
    )
    every = Selection(min_prob=0.0, include_flagged=True)
    full = [tmp_path / f"full.{suffix}" for suffix in SUFFIXES]
    find_candidates(int8_predictions, full, selection=every, known=known)
    empty = [tmp_path / f"empty.{suffix}" for suffix in SUFFIXES]
    find_candidates(_frame().iloc[1:], empty)  # absorption only: no candidate
    for vot in (tmp_path / "full.vot", tmp_path / "empty.vot"):
        fields = parse(str(vot), verify="exception").get_first_table().fields
        _check_ucds({field.name: field.ucd for field in fields}, vot)
    names = Table.read(tmp_path / "full.vot").colnames
    assert {"source", "known_name", "halpha_vr", "halpha_peak_ratio"} <= set(names)
    ecsv = Table.read(tmp_path / "full.ecsv")
    _check_ucds({c.name: c.meta["ucd"] for c in ecsv.itercols()}, "full.ecsv")
    written = tmp_path / "full.fits", tmp_path / "predictions.fits"
    write_predictions(written[1], _frame(), classes=CLASSES)
    for path in written:
        with fits.open(path) as hdul:
            header = hdul[1].header
            ucds = {k: str(v) for k, v in header.items() if k.startswith("TUCD")}
        assert len(ucds) == header["TFIELDS"], path
        _check_ucds(ucds, path)


def test_a_fits_catalogue_keeps_a_non_ascii_file_name_as_utf8_and_says_so(tmp_path: Path) -> None:
    from astropy.io import fits

    out = tmp_path / "c.fits"
    find_candidates(_frame(), [out])
    assert list(read_predictions(out)["source"]) == ["/data/dr1/ř-0.fits"]  # opens the file
    with fits.open(out) as hdul:
        assert hdul["CANDIDATES"].data["source"][0] == "/data/dr1/ř-0.fits".encode()
        assert "UTF-8" in str(hdul["CANDIDATES"].header["COMMENT"])


def test_a_csv_catalogue_writes_float32_values_as_short_as_the_predictions_csv(
    tmp_path: Path,
) -> None:
    out = tmp_path / "c.csv"
    find_candidates(_frame(), [out])
    header, row = out.read_text(encoding="utf-8").splitlines()
    values = dict(zip(header.split(","), row.split(","), strict=True))
    assert (values["p_emission"], values["snr"], values["novelty"]) == ("0.95", "30.0", "1.0")
    assert read_predictions(out)["p_emission"].iloc[0] == np.float32(0.95)


def test_a_fits_catalogue_escapes_non_ascii_column_names_of_another_model(
    tmp_path: Path,
) -> None:
    from astropy.io import fits

    table = tmp_path / "předpovědi.parquet"
    frame = _frame().assign(**{"poznámka": ["Ondřejov", ""]})
    frame.insert(frame.columns.get_loc("quality"), "p_šum", 0.0)  # a class "šum" (noise)
    frame.to_parquet(table)
    out = tmp_path / "c.fits"
    result = CliRunner().invoke(main, ["candidates", str(table), "-o", str(out)])
    assert result.exit_code == 0, result.output
    written = read_predictions(out)
    assert list(written["pozn\\xe1mka"]) == ["Ondřejov"]
    assert codecs.decode(written.columns[-1], "unicode_escape") == "poznámka"
    header = fits.getheader(out, "CANDIDATES")
    i = list(written.columns).index("p_\\u0161um") + 1
    assert codecs.decode(header[f"TCOMM{i}"], "unicode_escape").endswith("class šum")


CLASSES = ("emission", "absorption", "double-peak")


def _frame() -> pd.DataFrame:
    """Two rows of a predictions table, one an emission candidate, one absorption."""
    rows: list[dict[str, Any]] = []
    for i, p in enumerate([(0.95, 0.03, 0.02), (0.1, 0.8, 0.1)]):
        rows.append(
            {
                "id": f"s{i}",
                "source": f"/data/dr1/ř-{i}.fits",
                "archive": "lamost",
                "object": f"LAMOST J{i:06d}",
                "ra": 10.0 + i,
                "dec": 20.0,
                "mjd": 55000.0,
                "snr": 30.0,
                "predicted_class": CLASSES[p.index(max(p))],
                "p_emission": p[0],
                "p_absorption": p[1],
                "p_double_peak": p[2],
                "quality": 0,
                "quality_flags": "",
                "novelty": 1.0,
                "model_id": "m",
            }
        )
    return pd.DataFrame(rows)
