"""Query an IVOA SSAP service (the Ondřejov archive's) and download its spectra, with pyvo.

`query_ssap` asks the service for spectra by position and radius, target name,
band and a row limit, and returns one `SsapRecord` per spectrum with every
column of the answer kept as metadata. `download_spectrum` saves one spectrum
to a folder under a name derived from its publisher id, writing to a
temporary file and renaming it when complete, so an interrupted run leaves
no half file and a rerun reuses what is already there.

The Ondřejov CCD700 archive publishes its spectra through a DaCHS SSAP service
at voarchive.asu.cas.cz (find its current URL in the IVOA registry, e.g.
``pyvo.registry.search(servicetype="ssa", keywords=["ccd700"])``); DaCHS answers
with columns ``accref``, ``ssa_pubDID``, ``ssa_targname``, ... carrying the SSAP
utypes, which is what `query_ssap` reads (by utype first, then by name).
This module is not an archive reader (the package's registry skips it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from spectraldl.core.errors import is_output_error
from spectraldl.core.jsonsafe import json_safe
from spectraldl.io.archives.fitsfile import FitsFile, parse_header

FITS_MAGIC = b"SIMPLE  ="

_UTYPES: dict[str, tuple[str, ...]] = {
    "pubdid": ("ssa:Curation.PublisherDID", "Curation.PublisherDID", "ssa:DataID.DatasetID"),
    "title": ("ssa:DataID.Title", "DataID.Title"),
    "target": ("ssa:Target.Name", "Target.Name"),
    "format": ("ssa:Access.Format", "Access.Format"),
    "position": ("ssa:Char.SpatialAxis.Coverage.Location.Value", "ssa:Target.Pos"),
    "date": ("ssa:Char.TimeAxis.Coverage.Location.Value", "ssa:DataID.Date"),
}
_NAMES: dict[str, tuple[str, ...]] = {
    "pubdid": ("ssa_pubDID", "pubDID", "publisher_did"),
    "title": ("ssa_dstitle", "title"),
    "target": ("ssa_targname", "target_name"),
    "format": ("mime", "ssa_format", "format"),
    "position": ("ssa_location", "ssa_targetpos", "s_ra"),
    "date": ("ssa_dateObs", "t_midpoint"),
}


class SsapError(RuntimeError):
    """A service that cannot be queried, or a spectrum that cannot be fetched; names the URL."""


class DownloadFolderUnusable(Exception):
    """The download folder cannot take a file (full, read-only): every later one would fail
    alike, so an import stops rather than failing each spectrum. ``error`` says why."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class SsapRecord:
    """One spectrum found by an SSAP query.

    Attributes
    ----------
    url
        Where to download it (``ssa:Access.Reference``).
    pubdid
        The publisher's dataset id (``ivo://...``), '' when the service gives none.
    title, target, format
        Dataset title, target name and MIME type as the service states them.
    ra, dec
        Position in degrees (NaN when unknown).
    meta
        Every column of the service's answer for this spectrum (JSON-safe values).
    """

    url: str
    pubdid: str = ""
    title: str = ""
    target: str = ""
    format: str = ""
    ra: float = math.nan
    dec: float = math.nan
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A stable id for the spectrum: the publisher id, else the download URL."""
        return self.pubdid or self.url

    def file_name(self) -> str:
        """A safe local file name: the publisher id's last part plus a short hash (unique)."""
        tail = re.sub(r"[^A-Za-z0-9._-]+", "_", self.key.rstrip("/").rsplit("/", 1)[-1])[:80]
        digest = hashlib.sha256(self.key.encode("utf-8")).hexdigest()[:10]
        tail = re.sub(r"\.(fits|fit)$", "", tail, flags=re.IGNORECASE) or "spectrum"
        return f"{tail}-{digest}.fits"


def _pick(record: Any, names: tuple[str, ...], utypes: tuple[str, ...]) -> Any:
    for utype in utypes:
        value = record.getbyutype(utype, decode=True)
        if value is not None and not isinstance(value, np.ma.core.MaskedConstant):
            return value
    for name in names:
        if name in record:
            value = record[name]
            if not isinstance(value, np.ma.core.MaskedConstant):
                return value.decode("utf-8") if isinstance(value, bytes) else value
    return None


def _position(value: Any, record: Any) -> tuple[float, float]:
    try:
        values = [float(v) for v in np.atleast_1d(value)]
        if len(values) >= 2:
            return values[0], values[1]
    except (TypeError, ValueError):
        pass
    for ra_name, dec_name in (("s_ra", "s_dec"), ("ra", "dec"), ("RA", "DEC")):
        if ra_name in record and dec_name in record:
            try:
                return float(record[ra_name]), float(record[dec_name])
            except (TypeError, ValueError):
                break
    return math.nan, math.nan


def _session(timeout_s: float) -> Any:
    """A pyvo HTTP session whose every request waits at most ``timeout_s`` per step.

    pyvo sends its requests without a timeout, so a service that accepts the
    connection and never answers would hang the query forever.
    """
    from pyvo.utils.http import create_session

    session = create_session()
    send = session.request

    def request(method: str, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", timeout_s)
        return send(method, url, **kwargs)

    session.request = request
    return session


def query_ssap(
    service_url: str,
    *,
    pos: tuple[float, float] | None = None,
    size_deg: float | None = None,
    target: str | None = None,
    band_aa: tuple[float, float] | None = None,
    time: tuple[str, str] | None = None,
    format: str | None = None,
    limit: int | None = None,
    timeout_s: float = 120.0,
) -> list[SsapRecord]:
    """Ask an SSAP service for spectra; returns at most ``limit`` records in the service's order.

    Parameters
    ----------
    service_url
        The service's base URL (``...ssap.xml?`` or any URL the service answers queries at).
    pos, size_deg
        ICRS position (degrees) and the search diameter (degrees).
    target
        Target name (the SSAP ``TARGETNAME`` parameter).
    band_aa
        Wavelength range in Å that the spectra must overlap.
    time
        ISO start and end of the observation time range.
    format
        MIME type or SSAP format keyword (``fits``, ``all``, ...).
    limit
        Largest number of records (SSAP ``MAXREC``).
    timeout_s
        Seconds to wait for the service to accept the connection, and then for
        each piece of its answer (as `download_spectrum`'s ``timeout_s``).

    Raises `SsapError` naming the service for HTTP, protocol or format errors,
    and when the service does not answer within ``timeout_s``.
    """
    import astropy.units as u
    import pyvo
    import requests
    from pyvo.dal.exceptions import DALAccessError, DALFormatError, DALQueryError

    keywords: dict[str, Any] = {}
    if target:
        keywords["TARGETNAME"] = target
    if limit is not None:
        keywords["MAXREC"] = int(limit)
    if size_deg is not None and pos is None:
        raise SsapError(f"{service_url}: a search size needs a position (pos)")
    try:
        service = pyvo.dal.SSAService(service_url, session=_session(timeout_s))
        query = service.create_query(
            pos=pos,
            diameter=size_deg,
            band=None if band_aa is None else (band_aa[0], band_aa[1]) * u.AA,
            time=time,
            format=format,
            **keywords,
        )
        results = query.execute()
    except requests.Timeout:
        raise SsapError(f"{service_url}: the service did not answer within {timeout_s} s") from None
    except (DALAccessError, DALFormatError, DALQueryError) as exc:
        if isinstance(getattr(exc, "cause", None), requests.Timeout):
            reason = f"the service did not answer within {timeout_s} s"
            raise SsapError(f"{service_url}: {reason}") from None
        raise SsapError(f"{service_url}: the SSAP query failed ({exc})") from None
    except OSError as exc:
        raise SsapError(f"{service_url}: cannot reach the service ({exc})") from None
    records = []
    for record in results:
        url = record.getdataurl()
        if isinstance(url, bytes):
            url = url.decode("utf-8")
        if not url:
            continue
        ra, dec = _position(_pick(record, _NAMES["position"], _UTYPES["position"]), record)
        meta = {name: json_safe(record[name]) for name in results.fieldnames}
        records.append(
            SsapRecord(
                url=str(url),
                pubdid=str(_pick(record, _NAMES["pubdid"], _UTYPES["pubdid"]) or ""),
                title=str(_pick(record, _NAMES["title"], _UTYPES["title"]) or ""),
                target=str(_pick(record, _NAMES["target"], _UTYPES["target"]) or ""),
                format=str(_pick(record, _NAMES["format"], _UTYPES["format"]) or ""),
                ra=ra,
                dec=dec,
                meta=meta,
            )
        )
        if limit is not None and len(records) >= limit:
            break
    return records


def download_spectrum(
    record: SsapRecord, directory: str | Path, *, timeout_s: float = 120.0
) -> tuple[Path, bool]:
    """Save one spectrum into ``directory``; returns its path and whether it was downloaded now.

    A file already there (from an earlier, possibly interrupted run) is reused.
    The download goes to ``NAME.part`` and is renamed when complete; the part
    is locked (``flock``, released by the system even when the process is
    killed) while it is written, so a run that wants the same file at the same
    time (two imports of one query) waits for it instead of writing into it.
    Raises `SsapError` naming the URL when the server fails, the download is cut short
    (`_incomplete`: nothing is kept, a rerun fetches it again) or it sends something
    that is not FITS, and `DownloadFolderUnusable` when ``directory`` cannot take the file.
    """
    try:
        return _download(record, Path(directory), timeout_s)
    except OSError as exc:
        if is_output_error(exc):
            raise DownloadFolderUnusable(exc) from None
        raise


def _download(record: SsapRecord, directory: Path, timeout_s: float) -> tuple[Path, bool]:
    """`download_spectrum`, an unusable folder raised as the `OSError` it is."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / record.file_name()
    if path.exists() and not _kept_cut_short(path):
        return path, False
    if urllib.parse.urlsplit(record.url).scheme not in ("http", "https"):
        raise SsapError(f"{record.url}: only http and https downloads are supported")
    part = path.with_name(path.name + ".part")
    while True:
        with part.open("ab+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            if path.exists():  # another run downloaded it while this one waited
                _remove_if_same(part, handle.fileno())
                return path, False
            if _is_same(part, handle.fileno()):
                _download_into(handle, part, record.url, timeout_s)
                os.replace(part, path)
                return path, True
        # The run this one waited for failed and removed its part: start again.


def _download_into(handle: BinaryIO, part: Path, url: str, timeout_s: float) -> None:
    """Write the file at ``url`` into the locked, open ``part``; checks it is FITS (or gzip)."""
    handle.truncate(0)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            shutil.copyfileobj(response, handle, length=1 << 16)
            announced = response.headers.get("Content-Length", "")
        handle.flush()
    except (OSError, ValueError) as exc:
        _remove_if_same(part, handle.fileno())
        if isinstance(exc, urllib.error.HTTPError):
            exc.close()  # its answer's connection: kept open by the error until collected
        if is_output_error(exc):
            raise  # no space or not writable: `download_spectrum` stops the run
        raise SsapError(f"{url}: download failed ({exc})") from None
    handle.seek(0)
    head = handle.read(len(FITS_MAGIC))
    problem = _incomplete(handle, announced)
    if head != FITS_MAGIC and head[:2] != b"\x1f\x8b":
        kind = "a VOTable or HTML page" if head.lstrip().startswith(b"<") else "not FITS"
        problem = (
            f"the service sent {kind} instead of a FITS file (ask for FITS with --format fits)"
        )
    if problem:
        _remove_if_same(part, handle.fileno())
        raise SsapError(f"{url}: {problem}")


def _incomplete(handle: BinaryIO, announced: str) -> str:
    """Why the download in ``handle`` is cut short, or ''.

    urllib returns what arrived when the server closes early, even short of its
    Content-Length; without one, `_cut_short` tells by the file's own structure.
    """
    size = os.fstat(handle.fileno()).st_size
    if announced.isdigit():
        if size != int(announced):
            return f"download incomplete: {size} of the {announced} bytes announced arrived"
        return ""  # all the server has: the reader judges the file itself
    return _cut_short(handle, size)


def _cut_short(handle: BinaryIO, size: int) -> str:
    """Why the open file of ``size`` bytes ends early, or '': a plain FITS file ends inside
    an HDU (its header or data unit; a last block short of only its zero padding is whole, as
    readers take it), a gzipped one before its gzip stream ends (read through, 1 ms for 100 kB)."""
    handle.seek(0)
    head = handle.read(len(FITS_MAGIC))
    if head == FITS_MAGIC:
        handle.seek(0)
        where = _ends_inside_an_hdu(handle.read())
        return f"download cut short: {size} bytes, {where}" if where else ""
    if head[:2] == b"\x1f\x8b":
        handle.seek(0)
        stream = zlib.decompressobj(wbits=31)
        try:
            while not stream.eof and (block := handle.read(1 << 16)):
                while block and not stream.eof:  # at most 1 MB out at a time
                    stream.decompress(block, 1 << 20)
                    block = stream.unconsumed_tail
        except zlib.error as exc:
            return f"download damaged: not a whole gzip stream ({exc})"
        if not stream.eof:
            return f"download cut short: {size} bytes, the gzip stream ends early"
    return ""


def _ends_inside_an_hdu(data: bytes) -> str:
    """Where the plain FITS bytes ``data`` end inside an HDU, or ''
    (`FitsFile.ends_inside_an_hdu`)."""
    try:
        header, data_start = parse_header(data)
    except ValueError:
        return "the file ends inside its primary header (no END card)"
    return FitsFile(Path(), data, header, data_start).ends_inside_an_hdu()


def _kept_cut_short(path: Path) -> bool:
    """Whether the file ``path``, kept from an earlier run, ends early (as a download cut
    short was kept before the check existed): it is removed, to be downloaded again."""
    try:
        with path.open("rb") as handle:
            if not _cut_short(handle, os.fstat(handle.fileno()).st_size):
                return False
        path.unlink()
    except FileNotFoundError:
        pass
    return True


def _is_same(part: Path, fd: int) -> bool:
    """Whether ``part`` is still the file open as ``fd`` (not removed, nor made again since)."""
    try:
        return os.stat(part).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _remove_if_same(part: Path, fd: int) -> None:
    """Remove ``part`` if it is still the file open as ``fd`` (not one a later run made)."""
    if _is_same(part, fd):
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
