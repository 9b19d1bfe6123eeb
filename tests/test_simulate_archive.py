"""Simulated archives on disk: real layouts, determinism, truth.csv, junk files, the CLI."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import re
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from click.testing import CliRunner
from process_helpers import refused_while_locked

from spectraldl.cli import main
from spectraldl.io.archives import read_spectrum
from spectraldl.io.archives.fitsfile import FitsFile
from spectraldl.io.bundled import real_dir
from spectraldl.io.dataset import read_dataset
from spectraldl.io.labels import CLASSES
from spectraldl.jobs.ingest import ingest
from spectraldl.simulate import (
    JUNK_REASONS,
    read_truth_csv,
    simulate_archive,
    simulate_spectra,
)
from spectraldl.simulate.common import streams
from spectraldl.simulate.fitsbytes import gzip_bytes
from spectraldl.simulate.junk import JUNK_KINDS, SURVEY_KINDS, kinds_for, make_junk
from spectraldl.simulate.population import Population
from spectraldl.simulate.registry import simulated_archives

DATA = Path(__file__).parent / "data"

LAYOUTS = [
    ("lamost", {"release": "dr1"}, DATA / "lamost-dr1" / "spec-55862-B6212_sp06-003.fits"),
    ("lamost", {"release": "dr2"}, DATA / "lamost-dr2" / "spec-56257-GAC089N38V2_sp01-009.fit"),
    (
        "lamost",
        {"release": "dr6"},
        DATA / "lamost-dr7" / "spec-58397-EG014118N254444M01_sp03-031.fits",
    ),
    (
        "lamost",
        {"release": "dr8"},
        DATA / "lamost-dr8-table" / "spec-58397-EG014118N254444M01_sp03-031.fits",
    ),
    ("ondrejov", {"form": "ssap"}, DATA / "ondrejov-ssap" / "uk220017.fits"),
    ("ondrejov", {"form": "raw"}, DATA / "ondrejov-raw" / "uk220017.fits"),
]

READER_KEYS = {
    "lamost": {
        "TELESCOP", "ORIGIN", "FILENAME", "EXTEN0", "DESIG", "RA", "DEC", "DATE-OBS", "MJD",
        "CLASS", "SUBCLASS", "Z", "PLANID", "FIBERID", "SPID", "OBJNAME", "COEFF0", "COEFF1",
    },
    "ssap": {"OBJECT", "RA", "DEC", "DATE", "TMID", "DS_IDPUB", "TITLE", "TTYPE1", "TTYPE2"},
    "raw": {
        "OBJECT", "OBSERVAT", "TELESCOP", "INSTRUME", "DATE-OBS", "UT", "EXPTIME", "EXPVAL",
        "GRATANG", "DETECTOR", "CHIPID", "RA", "DEC", "CRVAL1", "CDELT1", "CRPIX1", "BUNIT", "HJD",
    },
}  # fmt: skip
"""Header keys the readers and catalogues use, per layout."""


def _files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.is_file() and re.search(r"\.fits(\.gz)?$", p.name)
    )


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "simulation.json"
    }


@pytest.mark.parametrize(("archive", "layout", "real"), LAYOUTS, ids=lambda v: str(v)[-30:])
def test_layout_reads_back_like_a_real_file(
    tmp_path: Path, archive: str, layout: dict[str, str], real: Path
) -> None:
    out = tmp_path / "arch"
    simulate_archive(out, archive=archive, n=4, seed=21, **layout)
    files = _files(out)
    assert len(files) == 4
    memory = simulate_spectra(4, archive=archive, seed=21, **layout)
    kind = "lamost" if archive == "lamost" else layout["form"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)  # the real raw files' HISTORY1 keys
        with fits.open(real) as hdul:
            real_info = [
                (type(h).__name__, h.header.get("BITPIX"), h.header.get("NAXIS")) for h in hdul
            ]
            real_shape = hdul[0].data.shape if hdul[0].data is not None else None
            real_columns = hdul[1].columns.names if len(hdul) > 1 else None
            real_formats = hdul[1].columns.formats if len(hdul) > 1 else None
    for path in files:
        spectrum = read_spectrum(path)
        truth = {row["file"]: row for row in read_truth_csv(out / "truth.csv")}
        twin = memory.spectra[
            memory.labels
            and [t["file"] for t in memory.truth].index(
                str(path.relative_to(out)).removesuffix(".gz")
            )
        ]
        with fits.open(path) as hdul:
            hdul.verify("exception")
            info = [(type(h).__name__, h.header.get("BITPIX"), h.header.get("NAXIS")) for h in hdul]
            assert info == real_info
            header = hdul[0].header if kind != "ssap" else hdul[1].header
            assert READER_KEYS[kind] <= set(header)
            # Marked as synthetic where a person looks first; real files never say so.
            assert hdul[0].header["SIMULATD"] is True
            assert FitsFile.open(real).header.get("SIMULATD") is None
            if real_shape is not None:
                assert hdul[0].data.shape[0] == real_shape[0]
                image = hdul[0].data
            else:
                assert hdul[1].columns.names == real_columns
                assert hdul[1].columns.formats[:1] == real_formats[:1] or kind == "lamost"
                image = None
            # The project's fast header parser agrees with astropy on every key.
            parsed = FitsFile.open(path).header
            for key in hdul[0].header:
                if key and key not in ("COMMENT", "HISTORY"):
                    assert parsed[key] == hdul[0].header[key], key
            # Arrays: astropy, the reader and the in-memory twin agree exactly.
            if kind == "lamost" and image is not None:
                np.testing.assert_array_equal(spectrum.flux, image[0].astype(np.float64))
                np.testing.assert_array_equal(spectrum.ivar, image[1].astype(np.float64))
            elif kind == "lamost":
                row = hdul[1].data[0]
                np.testing.assert_array_equal(spectrum.flux, row["FLUX"].astype(np.float64))
                np.testing.assert_array_equal(
                    spectrum.wave_aa, row["WAVELENGTH"].astype(np.float64)
                )
            elif kind == "ssap":
                np.testing.assert_array_equal(spectrum.flux, hdul[1].data["flux"])
                np.testing.assert_array_equal(spectrum.wave_aa, hdul[1].data["spectral"])
            else:
                np.testing.assert_array_equal(spectrum.flux, image.astype(np.float64))
        np.testing.assert_array_equal(spectrum.flux, twin.flux)
        np.testing.assert_array_equal(spectrum.wave_aa, twin.wave_aa)
        if twin.ivar is not None:
            np.testing.assert_array_equal(spectrum.ivar, twin.ivar)
        assert {**vars(spectrum.meta), "source": ""} == {**vars(twin.meta), "source": ""}
        row = truth[str(path.relative_to(out))]
        assert row["id"] == spectrum.id
        assert float(row["ra"]) == pytest.approx(spectrum.meta.ra, abs=1e-5)
        assert float(row["dec"]) == pytest.approx(spectrum.meta.dec, abs=1e-5)


def test_same_seed_same_bytes_for_any_worker_count(tmp_path: Path) -> None:
    one = tmp_path / "one"
    two = tmp_path / "two"
    simulate_archive(one, archive="lamost", n=30, seed=5, junk=0.2, workers=1)
    simulate_archive(two, archive="lamost", n=30, seed=5, junk=0.2, workers=2)
    assert _digest(one) == _digest(two)
    # A continuation (start) is the same files as one long run.
    part = tmp_path / "part"
    simulate_archive(part, archive="lamost", n=10, seed=5, junk=0.2, start=20)
    first = _digest(one)
    assert all(
        first[name] == digest for name, digest in _digest(part).items() if name != "truth.csv"
    )
    other = tmp_path / "other"
    simulate_archive(other, archive="lamost", n=30, seed=6, junk=0.2)
    shared = set(_digest(other).values()) & set(first.values())
    assert len(shared) <= 3  # only content-free junk (an empty file, a text note) can repeat
    ondrejov = [tmp_path / "o1", tmp_path / "o2"]
    for workers, folder in zip((1, 2), ondrejov, strict=True):
        simulate_archive(folder, archive="ondrejov", n=12, seed=5, workers=workers, form="raw")
    assert _digest(ondrejov[0]) == _digest(ondrejov[1])


def test_gzip_is_byte_stable_and_readable(tmp_path: Path) -> None:
    simulate_archive(tmp_path, archive="lamost", n=2, seed=1, compress=True)
    path = _files(tmp_path)[0]
    data = path.read_bytes()
    assert data[:2] == b"\x1f\x8b" and data[4:8] == b"\0\0\0\0"  # mtime 0
    with fits.open(path) as hdul:  # astropy recognises the .gz and reads it
        assert hdul[0].header["TELESCOP"] == "LAMOST"
    assert gzip.decompress(data).startswith(b"SIMPLE  =")


def test_gzip_writes_the_bytes_zlib_writes(tmp_path: Path) -> None:
    # zlib-ng's run-length deflate replaced zlib's for speed: the archives it writes must be
    # the very bytes zlib wrote, on simulated files of each release and on real files.
    simulate_archive(tmp_path / "a", archive="lamost", n=6, seed=2, junk=0.3, compress=False)
    simulate_archive(tmp_path / "b", archive="lamost", n=3, seed=2, release="dr8", compress=False)
    inputs = [p.read_bytes() for p in sorted(tmp_path.rglob("*.fits"))]
    inputs += [gzip.decompress(p.read_bytes()) for p in sorted(real_dir().rglob("*.gz"))[:10]]
    inputs += [b"", bytes(100_000), np.random.default_rng(0).bytes(50_000)]
    assert len(inputs) > 15
    for data in inputs:
        compressor = zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
        expected = compressor.compress(data) + compressor.flush()
        written = gzip_bytes(data, level=1)
        assert written[10:-8] == expected
        assert gzip.decompress(written) == data


def test_truth_csv_agrees_with_ingested_files(tmp_path: Path) -> None:
    out = tmp_path / "ond"
    summary = simulate_archive(
        out, archive="ondrejov", n=60, seed=2, mix="emission=1,absorption=1,double-peak=1"
    )
    result = ingest([out], tmp_path / "ond.h5", labels_csv=summary.truth_csv, origin="synthetic")
    assert not result.errors
    rows = read_dataset(tmp_path / "ond.h5")
    truth = {row["id"]: row for row in read_truth_csv(summary.truth_csv)}
    assert len(rows) == 60
    for ident, code in zip(rows.ids, rows.labels, strict=True):
        assert CLASSES[code] == truth[ident]["label"]
    counts = {name: sum(r["label"] == name for r in truth.values()) for name in summary.classes}
    assert counts == summary.classes
    assert all(abs(v - 20) <= 2 for v in counts.values())


def test_junk_files_trip_ingest_errors_as_listed(tmp_path: Path) -> None:
    results = {}
    for archive, layout in (("lamost", {"release": "dr1"}), ("ondrejov", {"form": "ssap"})):
        out = tmp_path / archive
        summary = simulate_archive(out, archive=archive, n=140, seed=12, junk=0.5, **layout)
        ingested = ingest([out], tmp_path / f"{archive}.h5", labels_csv=summary.truth_csv)
        errors = {Path(e.path).resolve(): e.reason for e in ingested.errors}
        truth = read_truth_csv(summary.truth_csv)
        junk = {(out / row["file"]).resolve(): row["junk"] for row in truth if row["junk"]}
        assert set(errors) == set(junk), "every junk file, and only junk files, is an error"
        for path, kind in junk.items():
            words = JUNK_REASONS[kind].split("|")
            assert any(word in errors[path] for word in words), (kind, errors[path])
        assert set(junk.values()) == set(kinds_for(archive, compressed=archive == "lamost"))
        assert ingested.added == sum(not row["junk"] for row in truth)
        assert all(row["label"] == "unknown" for row in truth if row["junk"])
        assert math.isclose(len(junk) / len(truth), 0.5, abs_tol=0.04)
        results[archive] = summary
    assert results["lamost"].junk_kinds and results["ondrejov"].junk_kinds


def test_each_survey_makes_its_own_junk_kinds_and_refuses_others() -> None:
    for name, survey in simulated_archives().items():
        assert set(survey.junk_makers) <= SURVEY_KINDS <= set(JUNK_KINDS), name
        missing = SURVEY_KINDS - set(survey.junk_makers)
        assert not missing & set(kinds_for(name, compressed=True)), name
        population = Population.default(name)
        for kind in missing:
            spec = survey.simulate_one(0, seed=1, population=population, layout=survey.layouts[0])
            with pytest.raises(ValueError, match="unknown junk kind"):
                make_junk(kind, spec, streams(1, name, 0).meta, archive=name)


def test_cli_simulate(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(
        main,
        [
            "simulate",
            "--archive",
            "ondrejov",
            "-n",
            "6",
            "-o",
            str(out),
            "--mix",
            "emission=1",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "6 ondrejov files" in result.output
    assert {row["label"] for row in read_truth_csv(out / "truth.csv")} == {"emission"}
    assert len(_files(out)) == 6
    result = runner.invoke(
        main,
        [
            "simulate",
            "--archive",
            "lamost",
            "-n",
            "3",
            "-o",
            str(tmp_path / "l"),
            "--release",
            "dr8",
            "--no-gzip",
        ],
    )
    assert result.exit_code == 0, result.output
    assert all(p.suffix == ".fits" for p in _files(tmp_path / "l"))
    bad = runner.invoke(
        main, ["simulate", "--archive", "lamost", "-n", "2", "-o", str(out), "--mix", "x=1"]
    )
    assert bad.exit_code == 1 and "unknown class" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(
        main, ["simulate", "--archive", "lamost", "-n", "2", "-o", str(out), "--junk", "2"]
    )
    assert bad.exit_code == 2


def test_real_files_and_simulated_files_share_a_tree(tmp_path: Path) -> None:
    out = tmp_path / "tree"
    simulate_archive(out / "synthetic", archive="lamost", n=5, seed=1)
    real = sorted((real_dir() / "lamost" / "dr1").iterdir())[:3]
    for path in real:
        (out / "real").mkdir(exist_ok=True)
        (out / "real" / path.name).write_bytes(path.read_bytes())
    result = ingest([out], tmp_path / "tree.h5")
    assert result.added == 8 and not result.errors


def test_simulate_command_asks_for_plate_systematics(tmp_path: Path) -> None:
    def run(name: str, *extra: str) -> tuple[int, str]:
        args = ["simulate", "--archive", "lamost", "-n", "12", "-o", str(tmp_path / name)]
        result = CliRunner().invoke(main, [*args, "-j", "1", *extra])
        return result.exit_code, result.output

    assert run("plain")[0] == 0
    assert run("plates", "--plate-systematics", "--fibres-per-plate", "4")[0] == 0
    assert run("again", "--plate-systematics", "--fibres-per-plate", "4")[0] == 0
    name = sorted(p.name for p in (tmp_path / "plain").rglob("*.fits.gz"))[0]

    def data(folder: str) -> bytes:
        return next((tmp_path / folder).rglob(name)).read_bytes()

    assert data("plates") == data("again") != data("plain")
    code, output = run("lonely", "--fibres-per-plate", "4")
    assert code == 2 and "needs --plate-systematics" in output


def test_a_layout_option_of_the_other_archive_is_a_usage_error(tmp_path: Path) -> None:
    """``--archive ondrejov --release dr8`` wrote Ondřejov files and ignored --release unsaid;
    an option the archive has (its default given aloud too) is taken."""
    cases = {
        ("ondrejov", "--release", "dr8"): "--release is for --archive lamost; ondrejov has --form",
        ("lamost", "--form", "raw"): "--form is for --archive ondrejov; lamost has --release",
    }
    for (archive, option, value), message in cases.items():
        out = tmp_path / archive
        args = ["simulate", "--archive", archive, "-n", "2", "-o", str(out), "-j", "1"]
        result = CliRunner().invoke(main, [*args, option, value])
        assert result.exit_code == 2 and f"Error: {message}" in result.output
        assert not out.exists()
    args = ["simulate", "--archive", "ondrejov", "-n", "2", "-o", str(tmp_path / "o"), "-j", "1"]
    assert CliRunner().invoke(main, [*args, "--form", "ssap"]).exit_code == 0
    zero = CliRunner().invoke(main, [*args[:3], "-n", "0", "-o", str(tmp_path / "z")])
    assert zero.exit_code == 0 and f"in {tmp_path / 'z'}: no spectra; 0 junk" in zero.output


def test_simulate_command_names_the_archives_it_knows(tmp_path: Path) -> None:
    """An unknown ``--archive`` (checked after parsing, once the workers' server has started)
    is the usage error click gives for a choice, and writes nothing."""
    out = tmp_path / "out"
    args = ["simulate", "--archive", "sdss", "-n", "4", "-o", str(out), "-j", "2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "Invalid value for '--archive': 'sdss' is not one of 'lamost', 'ondrejov'" in (
        result.output
    )
    assert not out.exists()
    shown = CliRunner().invoke(main, ["simulate", "--help"]).output
    assert "--archive [lamost|ondrejov]" in shown


def test_start_extends_a_set_and_keeps_its_truth(tmp_path: Path) -> None:
    """``start`` into a folder of the same settings adds rows to truth.csv (it replaced them:
    the labels of the files already there were lost), and simulation.json lists the indices."""
    whole = tmp_path / "whole"
    simulate_archive(whole, archive="lamost", n=40, seed=5, junk=0.2)
    out = tmp_path / "out"
    simulate_archive(out, archive="lamost", n=30, seed=5, junk=0.2)
    summary = simulate_archive(out, archive="lamost", n=10, seed=5, junk=0.2, start=30)
    # One long run and a run extended by a second: the same files, the same truth.csv.
    assert _digest(out) == _digest(whole)
    assert summary.files == 10 and summary.truth_rows == 40 and "40 files in all" in summary.line()
    settings = json.loads((out / "simulation.json").read_text())
    assert (settings["n"], settings["start"], settings["ranges"]) == (40, 0, [[0, 40]])
    # A rerun of a range replaces its rows with the same bytes.
    simulate_archive(out, archive="lamost", n=10, seed=5, junk=0.2, start=10)
    assert _digest(out) == _digest(whole)
    # A gap is recorded as two ranges; truth.csv stays in index order.
    simulate_archive(out, archive="lamost", n=5, seed=5, junk=0.2, start=50)
    settings = json.loads((out / "simulation.json").read_text())
    assert (settings["n"], settings["start"], settings["ranges"]) == (45, 0, [[0, 40], [50, 55]])
    truth = read_truth_csv(out / "truth.csv")
    assert [int(row["index"]) for row in truth] == [*range(40), *range(50, 55)]
    assert truth[:40] == read_truth_csv(whole / "truth.csv")
    assert len(_files(out)) == 45


def test_start_into_a_set_of_other_settings_is_refused(tmp_path: Path) -> None:
    """Another seed, archive, layout, mix or junk fraction into a simulated folder would mix
    two simulations in one tree: refused before anything is written, naming what differs."""
    out = tmp_path / "out"
    simulate_archive(out, archive="lamost", n=12, seed=5, junk=0.2)
    before = _digest(out)
    settings = (out / "simulation.json").read_bytes()
    others = [
        ({"archive": "lamost", "seed": 6, "junk": 0.2}, "seed 5 there, 6 asked"),
        ({"archive": "lamost", "seed": 5, "junk": 0.0}, "junk 0.2 there, 0.0 asked"),
        ({"archive": "lamost", "seed": 5, "junk": 0.2, "release": "dr8"}, "layout"),
        ({"archive": "lamost", "seed": 5, "junk": 0.2, "mix": "emission=1"}, "mix"),
        ({"archive": "ondrejov", "seed": 5, "junk": 0.2}, "archive"),
    ]
    for args, differs in others:
        with pytest.raises(ValueError, match="simulation of other settings") as caught:
            simulate_archive(out, n=4, start=12, **args)
        assert str(out / "simulation.json") in str(caught.value)
        assert differs in str(caught.value)
    assert _digest(out) == before and (out / "simulation.json").read_bytes() == settings
    args = ["simulate", "--archive", "lamost", "-n", "4", "--start", "12", "-o", str(out)]
    result = CliRunner().invoke(main, [*args, "--seed", "7", "--junk", "0.2", "-j", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.count("\n") == 1 and "seed 5 there, 7 asked" in result.output
    (out / "simulation.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"not a simulation\.json"):
        simulate_archive(out, archive="lamost", n=4, seed=5, junk=0.2)
    assert _digest(out) == before


@pytest.mark.parametrize("spelling", ["absolute", "."])
def test_a_second_run_into_a_folder_another_run_writes_is_refused(
    tmp_path: Path, spelling: str
) -> None:
    """Two runs extending one folder would each write truth.csv as the earlier rows plus
    their own, losing the other's: while this process holds the folder as a first run
    would, a real second `simulate` process (given the folder by any name) stops at once
    with one line naming it and writes nothing."""
    out = tmp_path / "out"
    simulate_archive(out, archive="lamost", n=6, seed=5)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    name = str(out) if spelling == "absolute" else "."
    here = os.pathsep.join(sys.path)  # the spectraldl under test, from the folder's cwd too
    args = ["simulate", "--archive", "lamost", "-n", "3", "--start", "6", "--seed", "5"]
    refused_while_locked(
        out,
        [*args, "-o", name, "-j", "1"],
        named=name,
        cwd=out,
        env={**os.environ, "PYTHONPATH": here},
    )
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(tmp_path.iterdir()) == [out]


@pytest.mark.parametrize(
    ("option", "value"), [("--seed", "-1"), ("--start", "-1"), ("--junk", "nan"), ("-j", "0")]
)
def test_simulate_refuses_meaningless_numbers_naming_the_option(
    tmp_path: Path, option: str, value: str
) -> None:
    out = tmp_path / "sim"
    args = ["simulate", "--archive", "lamost", "-n", "2", "-o", str(out), option, value]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Invalid value for" in result.output
    assert option in result.output or "--workers" in result.output
    assert not out.exists()


@pytest.mark.parametrize("archive", ["ondrejov", "lamost"])
def test_a_start_beyond_the_last_spectrum_an_archive_names_is_one_line(
    tmp_path: Path, archive: str
) -> None:
    """Ondřejov's nights ran past the year 9999 (OverflowError traceback from a worker, the
    folder claimed); LAMOST's classes were all one beyond 2**53. The last index still works."""
    last = simulated_archives()[archive].last_index
    out = tmp_path / "sim"
    args = ["simulate", "--archive", archive, "-n", "2", "-o", str(out), "-j", "1"]
    result = CliRunner().invoke(main, [*args, "--start", str(last)])
    assert result.exit_code == 1, result.output
    assert f"spectra {last} to {last + 1} asked" in result.output
    assert f"names spectra 0 to {last} only" in result.output
    assert "Traceback" not in result.output and not out.exists()
    beyond = CliRunner().invoke(main, [*args[:4], "0", *args[5:], "--start", str(last + 1)])
    assert beyond.exit_code == 1 and f"spectrum {last + 1} asked" in beyond.output, beyond.output
    result = CliRunner().invoke(main, [*args, "--start", str(2 * last)])
    assert result.exit_code == 1 and "only (its dates and ids end there)" in result.output
    assert not out.exists()
    result = CliRunner().invoke(main, [*args, "--start", str(last - 1)])
    assert result.exit_code == 0, result.output
    rows = read_truth_csv(out / "truth.csv")
    assert [int(r["index"]) for r in rows] == [last - 1, last]
    if archive == "ondrejov":
        assert last > 40_000_000 and rows[-1]["id"].startswith("ivo://asu.cas.cz/stel/ccd700/a9998")
