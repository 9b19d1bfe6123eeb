"""SSAP: query a real HTTP server on loopback with pyvo, download, import, resume.

The server (started here, in a thread) answers SSAP queryData requests with a
VOTable built from the headers of the real Ondřejov SSAP-form files bundled in
src/spectraldl/data/real/ondrejov/ssap, in the column layout of the
archive's DaCHS service (accref, ssa_pubDID, ssa_targname, ssa_location ...
with their SSAP utypes), filters by POS/SIZE, TARGETNAME, BAND and MAXREC,
and serves those FITS files byte for byte.
"""

from __future__ import annotations

import gzip
import io
import math
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits
from astropy.io.votable.tree import Field, Info, Resource, TableElement, VOTableFile
from click.testing import CliRunner
from sqlalchemy import select

from spectraldl.cli import main
from spectraldl.io.archives import FitsFile, read_spectrum, ssap
from spectraldl.io.archives.fitsfile import data_unit_bytes
from spectraldl.io.archives.ssap import SsapError, download_spectrum, query_ssap
from spectraldl.io.bundled import real_dir
from spectraldl.prep.preprocess import preprocess
from spectraldl.web.db import Database, open_database
from spectraldl.web.importing import import_ssap
from spectraldl.web.models import SpectrumRow

SSAP_DIR = real_dir() / "ondrejov" / "ssap"


@dataclass
class Entry:
    """One spectrum the server offers, described by its file's header."""

    name: str
    pubdid: str
    title: str
    target: str
    ra: float
    dec: float
    mjd: float
    start_m: float
    stop_m: float
    size: int


def _entries() -> list[Entry]:
    out = []
    for path in sorted(SSAP_DIR.glob("*.fits")):
        header = fits.getheader(path, 1)
        with fits.open(path) as hdul:
            wave = np.asarray(hdul[1].data["spectral"], dtype=float)
        out.append(
            Entry(
                name=path.name,
                pubdid=header["DS_IDPUB"],
                title=header["TITLE"],
                target=header["OBJECT"],
                ra=float(header["RA"]),
                dec=float(header["DEC"]),
                mjd=float(header["TMID"]),
                start_m=wave.min() * 1e-10,
                stop_m=wave.max() * 1e-10,
                size=path.stat().st_size,
            )
        )
    return out


def _separation_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    cos = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(r1 - r2)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def _unpadded(path: Path) -> bytes:
    """The FITS file ``path`` (primary header and one extension) without its last padding."""
    extension, start = FitsFile.open(path).extension(1)
    data = path.read_bytes()[: start + data_unit_bytes(extension)]
    assert len(data) % 2880
    return data


@dataclass
class SsapService:
    """State of the loopback SSAP server: what it offers, what it was asked, what fails."""

    entries: list[Entry]
    url: str = ""
    queries: list[dict[str, str]] = field(default_factory=list)
    downloads: Counter = field(default_factory=Counter)
    failing: set[str] = field(default_factory=set)
    garbage: set[str] = field(default_factory=set)
    cut: dict[str, bool] = field(default_factory=dict)
    """Files sent cut to a third, the connection then closed: name -> whether the answer
    still announces the whole length (Content-Length) or none."""
    gzipped: set[str] = field(default_factory=set)
    """Files sent gzipped (as some services serve them)."""
    unpadded: set[str] = field(default_factory=set)
    """Files sent whole but without the zeros padding their last 2880-byte block (as some
    writers leave them; readers accept them)."""
    error_status: str = ""
    delay_s: float = 0.0
    """Seconds the server waits before answering a query (a slow or stuck service)."""
    gate: threading.Event | None = None
    """When set, a download waits for it before its file is sent (a download in progress)."""

    def votable(self, params: dict[str, str]) -> bytes:
        rows = list(self.entries)
        if "POS" in params:
            ra, dec = (float(v) for v in params["POS"].split(","))
            radius = float(params.get("SIZE", "0.0166")) / 2.0
            rows = [e for e in rows if _separation_deg(ra, dec, e.ra, e.dec) <= radius]
        if "TARGETNAME" in params:
            rows = [e for e in rows if e.target.lower() == params["TARGETNAME"].lower()]
        if "BAND" in params:
            lo, hi = (float(v) for v in params["BAND"].split("/"))
            rows = [e for e in rows if e.start_m <= hi and e.stop_m >= lo]
        if "MAXREC" in params:
            rows = rows[: int(params["MAXREC"])]
        votable = VOTableFile()
        resource = Resource(type="results")
        votable.resources.append(resource)
        status = Info(name="QUERY_STATUS", value="ERROR" if self.error_status else "OK")
        if self.error_status:
            status.content = self.error_status
        resource.infos.append(status)
        table = TableElement(votable)
        resource.tables.append(table)
        spec = [
            ("accref", "char", "*", "meta.ref.url", "ssa:Access.Reference"),
            ("mime", "char", "*", "meta.code.mime", "ssa:Access.Format"),
            ("accsize", "long", None, "phys.size;meta.file", "ssa:Access.Size"),
            ("ssa_dstitle", "char", "*", "meta.title;meta.dataset", "ssa:DataID.Title"),
            ("ssa_pubDID", "char", "*", "meta.ref.ivoid", "ssa:Curation.PublisherDID"),
            ("ssa_targname", "char", "*", "meta.id;src", "ssa:Target.Name"),
            (
                "ssa_location",
                "double",
                "2",
                "pos.eq",
                "ssa:Char.SpatialAxis.Coverage.Location.Value",
            ),
            (
                "ssa_dateObs",
                "double",
                None,
                "time.epoch",
                "ssa:Char.TimeAxis.Coverage.Location.Value",
            ),
            (
                "ssa_specstart",
                "double",
                None,
                "em.wl;stat.min",
                "ssa:Char.SpectralAxis.Coverage.Bounds.Start",
            ),
            (
                "ssa_specend",
                "double",
                None,
                "em.wl;stat.max",
                "ssa:Char.SpectralAxis.Coverage.Bounds.Stop",
            ),
        ]
        for name, datatype, arraysize, ucd, utype in spec:
            table.fields.append(
                Field(
                    votable, name=name, datatype=datatype, arraysize=arraysize, ucd=ucd, utype=utype
                )
            )
        table.create_arrays(len(rows))
        for i, e in enumerate(rows):
            table.array[i] = (
                f"{self.url}/data/{e.name}",
                "application/fits",
                e.size,
                e.title,
                e.pubdid,
                e.target,
                np.array([e.ra, e.dec]),
                e.mjd,
                e.start_m,
                e.stop_m,
            )
        buffer = io.BytesIO()
        votable.to_xml(buffer)
        return buffer.getvalue()


def _handler(service: SsapService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            if parts.path == "/ssap":
                params = {k.upper(): v for k, v in urllib.parse.parse_qsl(parts.query)}
                service.queries.append(params)
                time.sleep(service.delay_s)
                if params.get("REQUEST", "queryData") != "queryData":
                    self._send(400, b"unsupported REQUEST", "text/plain")
                    return
                self._send(200, service.votable(params), "application/x-votable+xml")
            elif parts.path.startswith("/data/"):
                name = parts.path.removeprefix("/data/")
                path = SSAP_DIR / name
                if "/" in name or not path.is_file():
                    self._send(404, b"no such file", "text/plain")
                    return
                service.downloads[name] += 1
                failing = name in service.failing  # as when the download started
                if service.gate is not None:
                    service.gate.wait(timeout=30)
                if failing:
                    self._send(500, b"archive busy", "text/plain")
                elif name in service.garbage:
                    self._send(200, b"<html>maintenance</html>", "text/html")
                elif name in service.cut:
                    data = path.read_bytes()
                    if name in service.gzipped:
                        data = gzip.compress(data)
                    self.send_response(200)
                    if service.cut[name]:
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 3])
                elif name in service.gzipped:
                    self._send(200, gzip.compress(path.read_bytes()), "application/gzip")
                elif name in service.unpadded:
                    self._send(200, _unpadded(path), "application/fits")
                else:
                    self._send(200, path.read_bytes(), "application/fits")
            else:
                self._send(404, b"not here", "text/plain")

    return Handler


@pytest.fixture
def service() -> Iterator[SsapService]:
    state = SsapService(entries=_entries())
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'ssap.db'}")
    yield database
    database.dispose()


def stored(db: Database) -> dict[str, SpectrumRow]:
    with db.session() as session:
        return {r.ident: r for r in session.scalars(select(SpectrumRow))}


# --- queries --------------------------------------------------------------------------------


def test_query_by_position_target_band_and_limit(service: SsapService) -> None:
    gamma_cas = next(e for e in service.entries if e.target == "gamma Cas")
    found = query_ssap(f"{service.url}/ssap", pos=(gamma_cas.ra, gamma_cas.dec), size_deg=0.1)
    assert [r.pubdid for r in found] == [gamma_cas.pubdid]
    record = found[0]
    assert record.url == f"{service.url}/data/{gamma_cas.name}"
    assert record.target == "gamma Cas" and record.format == "application/fits"
    assert math.isclose(record.ra, gamma_cas.ra) and math.isclose(record.dec, gamma_cas.dec)
    assert record.meta["ssa_dstitle"] == gamma_cas.title
    assert math.isclose(record.meta["ssa_dateObs"], gamma_cas.mjd)
    query = service.queries[-1]
    assert query["REQUEST"] == "queryData" and math.isclose(float(query["SIZE"]), 0.1)
    by_name = query_ssap(f"{service.url}/ssap", target="alpha Lyr")
    assert {r.target for r in by_name} == {"alpha Lyr"} and len(by_name) == 1
    everything = query_ssap(f"{service.url}/ssap", band_aa=(6550.0, 6570.0))
    assert len(everything) == len(service.entries)
    assert query_ssap(f"{service.url}/ssap", band_aa=(4000.0, 4100.0)) == []
    limited = query_ssap(f"{service.url}/ssap", limit=3)
    assert len(limited) == 3 and service.queries[-1]["MAXREC"] == "3"


def test_query_errors_name_the_service(service: SsapService) -> None:
    service.error_status = "the archive database is down"
    with pytest.raises(SsapError, match="the SSAP query failed") as info:
        query_ssap(f"{service.url}/ssap")
    assert service.url in str(info.value)
    with pytest.raises(SsapError, match=r"cannot reach|failed"):
        query_ssap(f"{service.url}/nothing-here")
    with pytest.raises(SsapError, match="needs a position"):
        query_ssap(f"{service.url}/ssap", size_deg=1.0)


@pytest.mark.timeout(30)
def test_query_gives_up_after_its_timeout(service: SsapService) -> None:
    service.delay_s = 4.0
    started = time.perf_counter()
    with pytest.raises(SsapError, match=r"did not answer within 0\.5 s") as info:
        query_ssap(f"{service.url}/ssap", target="alpha Lyr", timeout_s=0.5)
    assert time.perf_counter() - started < 3.0 and service.url in str(info.value)
    service.delay_s = 0.2  # slower than instant, well within the timeout: answered
    assert query_ssap(f"{service.url}/ssap", target="alpha Lyr", timeout_s=5.0)


def test_download_is_atomic_and_refuses_what_is_not_fits(
    service: SsapService, tmp_path: Path
) -> None:
    records = query_ssap(f"{service.url}/ssap", limit=2)
    path, fresh = download_spectrum(records[0], tmp_path)
    assert fresh and path.read_bytes() == (SSAP_DIR / Path(records[0].url).name).read_bytes()
    again, fresh = download_spectrum(records[0], tmp_path)
    assert again == path and not fresh and service.downloads[Path(records[0].url).name] == 1
    service.garbage.add(Path(records[1].url).name)
    with pytest.raises(SsapError, match="HTML page instead of a FITS file"):
        download_spectrum(records[1], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("announced", [True, False])
def test_a_download_cut_short_is_not_kept_and_a_rerun_fetches_it_whole(
    service: SsapService, db: Database, tmp_path: Path, announced: bool
) -> None:
    """A connection closed early (its Content-Length unmet, or with none, a FITS file ending
    inside an HDU) fails that spectrum and keeps nothing: a rerun downloads
    it again (it used to be kept as complete and reused, failing every rerun)."""
    url, download_dir = f"{service.url}/ssap", tmp_path / "dl"
    entry = service.entries[0]
    service.cut[entry.name] = announced
    first = import_ssap(db, url, download_dir=download_dir)
    assert [e.path for e in first.errors] == [f"{service.url}/data/{entry.name}"]
    reason = "incomplete" if announced else "cut short: 13440 bytes, the file ends inside HDU 1"
    assert reason in first.errors[0].reason
    assert first.added == len(service.entries) - 1
    assert not any(p.name.startswith(Path(entry.name).stem) for p in download_dir.iterdir())
    service.cut.clear()
    second = import_ssap(db, url, download_dir=download_dir)
    assert second.added == second.downloaded == 1 and not second.errors
    assert stored(db)[entry.pubdid].object == entry.target


def test_a_gzipped_download_cut_short_without_its_length_is_not_kept(
    service: SsapService, db: Database, tmp_path: Path
) -> None:
    """A gzipped file cut short with no Content-Length was kept (only plain FITS had a check
    of its own); its gzip stream ending early now fails it, and a rerun fetches it whole."""
    url, download_dir = f"{service.url}/ssap", tmp_path / "dl"
    entry = service.entries[0]
    service.gzipped.add(entry.name)
    service.cut[entry.name] = False
    first = import_ssap(db, url, download_dir=download_dir)
    assert [e.path for e in first.errors] == [f"{service.url}/data/{entry.name}"]
    assert "the gzip stream ends early" in first.errors[0].reason
    assert not any(p.name.startswith(Path(entry.name).stem) for p in download_dir.iterdir())
    service.cut.clear()
    second = import_ssap(db, url, download_dir=download_dir)
    assert second.added == second.downloaded == 1 and not second.errors
    assert stored(db)[entry.pubdid].object == entry.target


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_file_kept_cut_short_by_an_older_run_is_downloaded_again(
    service: SsapService, tmp_path: Path, gzipped: bool
) -> None:
    """Downloads cut short were kept before the check existed, and every rerun reused them
    and failed ("truncated"): such a file is now fetched again, a whole one still reused."""
    url, download_dir = f"{service.url}/ssap", tmp_path / "dl"
    if gzipped:
        service.gzipped.update(e.name for e in service.entries)
    first = open_database(f"sqlite:///{tmp_path / 'first.db'}")
    import_ssap(first, url, download_dir=download_dir)
    first.dispose()
    kept = sorted(download_dir.iterdir())
    short = kept[0]
    short.write_bytes(short.read_bytes()[: short.stat().st_size // 3])
    database = open_database(f"sqlite:///{tmp_path / 'second.db'}")
    again = import_ssap(database, url, download_dir=download_dir)
    database.dispose()
    assert not again.errors and again.added == len(service.entries)
    assert again.downloaded == 1 and again.reused == len(service.entries) - 1
    assert sorted(download_dir.iterdir()) == kept
    assert sorted(service.downloads.values()) == [1] * (len(kept) - 1) + [2]


def test_a_whole_file_short_of_its_last_blocks_padding_is_kept_and_reused(
    service: SsapService, db: Database, tmp_path: Path
) -> None:
    """A FITS file whose last 2880-byte block lacks its zero padding is whole (the reader
    takes it): it was refused as 'download cut short' though its Content-Length was met, and
    such a file kept from an earlier run was deleted and downloaded again on every rerun."""
    url, download_dir = f"{service.url}/ssap", tmp_path / "dl"
    entry = service.entries[0]
    service.unpadded.add(entry.name)
    first = import_ssap(db, url, download_dir=download_dir)
    assert not first.errors and first.added == len(service.entries)
    (kept,) = download_dir.glob(Path(entry.name).stem + "-*.fits")
    assert kept.read_bytes() == _unpadded(SSAP_DIR / entry.name)
    database = open_database(f"sqlite:///{tmp_path / 'second.db'}")
    again = import_ssap(database, url, download_dir=download_dir)
    database.dispose()
    assert not again.errors and again.reused == len(service.entries)
    assert service.downloads[entry.name] == 1


def test_a_file_cut_short_at_a_block_boundary_is_not_kept(tmp_path: Path) -> None:
    """Without a Content-Length, a plain FITS file cut inside a data unit is cut short
    even when the cut falls on a 2880-byte block boundary."""
    whole = next(SSAP_DIR.glob("*.fits")).read_bytes()
    cut = tmp_path / "cut.fits"
    cut.write_bytes(whole[: 2880 * (len(whole) // 2880 - 2)])
    with cut.open("rb") as handle:
        assert "ends inside HDU 1's data unit" in ssap._incomplete(handle, "")
    whole_file = tmp_path / "whole.fits"
    whole_file.write_bytes(_unpadded(next(SSAP_DIR.glob("*.fits"))))
    with whole_file.open("rb") as handle:
        assert ssap._incomplete(handle, "") == ""


@pytest.mark.parametrize("first_fails", [False, True])
def test_two_runs_downloading_one_file_at_once_fetch_it_once(
    service: SsapService, tmp_path: Path, first_fails: bool
) -> None:
    """Two imports of one query at once: the second waits for the first's download instead of
    writing into the same part (or, when the first fails, downloads it itself)."""
    record = query_ssap(f"{service.url}/ssap", limit=1)[0]
    name = Path(record.url).name
    service.gate = threading.Event()
    if first_fails:
        service.failing.add(name)
    results: dict[str, Any] = {}

    def fetch(who: str) -> None:
        try:
            results[who] = download_spectrum(record, tmp_path)
        except SsapError as exc:
            results[who] = exc

    first = threading.Thread(target=fetch, args=("first",))
    first.start()
    while service.downloads[name] == 0:  # the first is downloading, held at the gate
        time.sleep(0.01)
    second = threading.Thread(target=fetch, args=("second",))
    second.start()
    for _ in range(100):  # a second request reaching the server while the first is held
        if service.downloads[name] > 1:
            break
        time.sleep(0.01)
    assert service.downloads[name] == 1
    service.failing.discard(name)
    service.gate.set()
    first.join(timeout=30)
    second.join(timeout=30)
    path = tmp_path / record.file_name()
    assert path.read_bytes() == (SSAP_DIR / name).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    if first_fails:
        assert isinstance(results["first"], SsapError) and results["second"] == (path, True)
        assert service.downloads[name] == 2
    else:
        assert results == {"first": (path, True), "second": (path, False)}
        assert service.downloads[name] == 1


# --- imports --------------------------------------------------------------------------------


def test_import_keeps_arrays_and_metadata(
    service: SsapService, db: Database, tmp_path: Path
) -> None:
    summary = import_ssap(db, f"{service.url}/ssap", download_dir=tmp_path / "dl")
    assert summary.found == summary.added == summary.downloaded == len(service.entries)
    assert not summary.errors
    rows = stored(db)
    for entry in service.entries:
        row = rows[entry.pubdid]
        spectrum = read_spectrum(SSAP_DIR / entry.name)
        assert np.array_equal(row.wave_aa(), spectrum.wave_aa)
        assert np.array_equal(row.vector(), preprocess(spectrum).x)
        assert row.object == entry.target and row.form == "ssap"
        assert row.source == f"{service.url}/data/{entry.name}"
        assert row.meta["ssap"]["ssa_pubDID"] == entry.pubdid
        assert row.meta["ssap"]["ssa_location"] == pytest.approx([entry.ra, entry.dec])
        assert row.meta["ssap_service"] == f"{service.url}/ssap"


def test_import_resumes_and_skips_duplicates(
    service: SsapService, db: Database, tmp_path: Path
) -> None:
    url = f"{service.url}/ssap"
    download_dir = tmp_path / "dl"
    first = import_ssap(db, url, download_dir=download_dir, limit=4)
    assert first.added == 4
    broken = service.entries[5].name
    service.failing.add(broken)
    second = import_ssap(db, url, download_dir=download_dir)
    assert second.already_present == 4  # known publisher ids: not even downloaded again
    assert second.added == len(service.entries) - 5
    assert [e.path for e in second.errors] == [f"{service.url}/data/{broken}"]
    assert "500" in second.errors[0].reason
    assert all(service.downloads[e.name] == 1 for e in service.entries if e.name != broken)
    service.failing.clear()
    third = import_ssap(db, url, download_dir=download_dir)
    assert third.added == 1 and third.already_present == len(service.entries) - 1
    assert third.downloaded == 1 and not third.errors
    assert set(stored(db)) == {e.pubdid for e in service.entries}
    # A database emptied of spectra reuses the files already downloaded.
    with db.session() as session:
        for row in session.scalars(select(SpectrumRow)):
            session.delete(row)
        session.commit()
    fourth = import_ssap(db, url, download_dir=download_dir)
    assert fourth.added == len(service.entries) and fourth.reused == len(service.entries)
    assert fourth.downloaded == 0


def test_ssap_import_command(service: SsapService, tmp_path: Path) -> None:
    gamma_cas = next(e for e in service.entries if e.target == "gamma Cas")
    db_url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "ssap-import",
            f"{service.url}/ssap",
            "--db",
            db_url,
            "--pos",
            f"{gamma_cas.ra},{gamma_cas.dec}",
            "--size",
            "0.2",
            "--band",
            "6500,6600",
            "--download-dir",
            str(tmp_path / "dl"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 spectra found; 1 downloaded" in result.output and "1 spectra added" in result.output
    again = runner.invoke(
        main,
        [
            "ssap-import",
            f"{service.url}/ssap",
            "--db",
            db_url,
            "--target",
            "gamma Cas",
            "--download-dir",
            str(tmp_path / "dl"),
        ],
    )
    assert again.exit_code == 0 and "1 already in the database" in again.output
    bad = runner.invoke(main, ["ssap-import", f"{service.url}/ssap", "--db", db_url, "--pos", "12"])
    assert bad.exit_code == 2 and "Invalid value for --pos: must be two numbers" in bad.output
    service.error_status = "overloaded"
    failed = runner.invoke(main, ["ssap-import", f"{service.url}/ssap", "--db", db_url])
    assert failed.exit_code == 1 and "overloaded" in failed.output
    database = open_database(db_url)
    assert list(stored(database)) == [gamma_cas.pubdid]
    database.dispose()


def _files_at_most(size: int) -> None:
    """In the child: writes beyond ``size`` bytes fail with EFBIG, as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def test_a_full_disk_stops_the_import_with_one_line_and_a_rerun_finishes_it(
    service: SsapService, tmp_path: Path
) -> None:
    """Every download failed alike on a full disk, each listed as a bad spectrum, and the
    run ended with exit status 0; it stops at the first, saying to free space and rerun."""
    db_url = f"sqlite:///{tmp_path / 'full.db'}"
    open_database(db_url).dispose()
    downloads = tmp_path / "dl"
    args = ["-m", "spectraldl.cli", "ssap-import", f"{service.url}/ssap", "--db", db_url]
    args += ["--download-dir", str(downloads)]
    full = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        preexec_fn=lambda: _files_at_most(36_000),
    )
    assert full.returncode == 1, full.stderr
    assert full.stderr.splitlines()[-1] == (
        f"Error: {downloads}: no space left on the device; the spectra stored so far are kept: "
        "free some space and run the same command to resume"
    )
    assert list(downloads.iterdir()) == []
    again = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    database = open_database(db_url)
    assert sorted(stored(database)) == sorted(e.pubdid for e in service.entries)
    database.dispose()
