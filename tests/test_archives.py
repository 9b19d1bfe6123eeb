"""Readers: every layout, arrays identical to astropy's, header-based detection."""

from __future__ import annotations

import gzip
import os
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from spectraldl.core.errors import SpectrumError
from spectraldl.io.archives import FitsFile, read_spectrum, readers
from spectraldl.io.archives.bintable import columns
from spectraldl.io.archives.fitsfile import _inflate_whole
from spectraldl.io.bundled import bundled_files


def _astropy(path: Path) -> fits.HDUList:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        return fits.open(path, memmap=False)


def test_every_layout_is_registered() -> None:
    names = {r.name for r in readers()}
    assert {
        "lamost-lrs-image",
        "lamost-lrs-table",
        "lamost-mrs",
        "ondrejov-ssap",
        "ondrejov-raw",
    } <= names
    assert all(r.data_model for r in readers())


@pytest.mark.parametrize("path", [f.path for f in bundled_files()], ids=lambda p: p.name)
def test_every_bundled_real_file_matches_astropy(path: Path) -> None:
    spectrum = read_spectrum(path)
    with _astropy(path) as hdul:
        header = hdul[0].header
        if spectrum.meta.form.startswith("lrs-image"):
            image = hdul[0].data
            assert np.array_equal(FitsFile.open(path).primary_array(), image, equal_nan=True)
            rows = [r.strip().lower() for r in header["EXTEN0"].replace(",", " ").split()]
            assert np.array_equal(spectrum.flux, image[rows.index("flux")].astype(float))
            assert np.array_equal(spectrum.ivar, image[rows.index("inverse")].astype(float))
            expected_wave = (
                image[rows.index("wavelength")]
                if "wavelength" in rows
                else 10 ** (header["COEFF0"] + header["COEFF1"] * np.arange(image.shape[1]))
            )
            assert np.allclose(spectrum.wave_aa, expected_wave, rtol=1e-12, atol=0)
            assert spectrum.id == header["FILENAME"].removesuffix(".fits")
            assert spectrum.meta.designation == header["DESIG"]
            assert spectrum.meta.ra == pytest.approx(header["RA"])
            assert spectrum.meta.snr == pytest.approx(header.get("SN_R", header.get("SNRR")))
            assert spectrum.medium == "vacuum"
        elif spectrum.meta.form == "ssap":
            table = hdul[1].data
            assert np.array_equal(spectrum.wave_aa, table["spectral"])
            assert np.array_equal(spectrum.flux, table["flux"])
            assert spectrum.id == hdul[1].header["DS_IDPUB"]
            assert spectrum.meta.object == hdul[1].header["OBJECT"]
            assert spectrum.meta.mjd == pytest.approx(hdul[1].header["TMID"])
            assert spectrum.medium == "air"
        elif spectrum.meta.form == "raw":
            data = hdul[0].data
            assert np.array_equal(FitsFile.open(path).primary_array(), data)
            assert np.array_equal(spectrum.flux, data.astype(float))
            i = np.arange(data.size)
            wave = header["CRVAL1"] + (i + 1 - header["CRPIX1"]) * header["CDELT1"]
            assert np.allclose(spectrum.wave_aa, wave, rtol=1e-12)
            assert spectrum.id == path.stem
            assert spectrum.meta.extra["expval"] == header["EXPVAL"]
            assert spectrum.medium == "air"
        else:
            assert spectrum.meta.form == "mrs"
            table = hdul["COADD_R"].data
            assert np.array_equal(np.sort(spectrum.flux), np.sort(table["FLUX"].astype(float)))
            assert np.all(np.diff(spectrum.wave_aa) > 0)
            assert spectrum.meta.resolving_power == 7500
    assert np.all(np.diff(spectrum.wave_aa) > 0)


def test_dr8_table_form_equals_the_dr7_image_it_was_built_from(data_dir: Path) -> None:
    table = read_spectrum(data_dir / "lamost-dr8-table/spec-58397-EG014118N254444M01_sp03-031.fits")
    image = read_spectrum(data_dir / "lamost-dr7/spec-58397-EG014118N254444M01_sp03-031.fits")
    assert table.meta.form == "lrs-table" and image.meta.form == "lrs-image"
    assert table.meta.extra["release"] == "DR8"
    assert np.array_equal(table.flux, image.flux)
    assert np.array_equal(table.ivar, image.ivar)
    assert np.array_equal(table.wave_aa, image.wave_aa)
    assert table.id == image.id and table.meta.obsid == "677503031"


def _dr8_like(path: Path, columns: list[fits.Column], *, primary: Path) -> Path:
    """A DR8-style file: ``primary``'s primary header (no data) and a one-row COADD table."""
    with _astropy(primary) as hdul:
        header = hdul[0].header.copy()
    fits.HDUList(
        [fits.PrimaryHDU(header=header), fits.BinTableHDU.from_columns(columns, name="COADD")]
    ).writeto(path)
    return path


def _table_columns(n: int, rng: np.random.Generator, dim: str | None = None) -> list[fits.Column]:
    """A COADD table with the columns around the spectrum a reader must step over."""
    wave = 10 ** (3.5682 + 1e-4 * np.arange(n))[None, :]
    return [
        fits.Column(name="OBJNAME", format="20A", array=np.array(["x" * 20])),
        fits.Column(name="flags", format="13X", array=np.ones((1, 13), bool)),
        fits.Column(name="GOOD", format="L", array=np.array([True])),
        fits.Column(name="FLUX", format=f"{n}E", array=rng.normal(size=(1, n)), dim=dim),
        fits.Column(name="NEXP", format="J", array=np.array([3])),
        fits.Column(name="IVAR", format=f"{n}D", array=rng.random((1, n))),
        fits.Column(name="WAVELENGTH", format=f"{n}D", array=wave),
        fits.Column(name="ANDMASK", format=f"{n}J", array=rng.integers(0, 4, (1, n))),
    ]


def _assert_columns_are_astropys(path: Path, names: set[str], index: int = 1) -> None:
    """`bintable.columns` reads ``names`` of ``path``'s table ``index`` as astropy does."""
    fast = columns(FitsFile.open(path), index, names)
    assert fast is not None
    rows, found = fast
    assert set(found) == names
    with _astropy(path) as hdul:
        table = hdul[index].data
        assert rows == len(table)
        for name, values in found.items():
            assert values.dtype == table[name].dtype and values.shape == table[name].shape
            assert np.array_equal(values, table[name])


@pytest.mark.parametrize(
    "path",
    [f.path for f in bundled_files(archive="ondrejov") if f.path.parent.name == "ssap"],
    ids=lambda p: p.name,
)
def test_real_ondrejov_ssap_tables_are_read_from_the_bytes_as_astropy_reads_them(
    path: Path,
) -> None:
    assert read_spectrum(path).meta.form == "ssap"
    _assert_columns_are_astropys(path, {"SPECTRAL", "FLUX"})
    spectrum = read_spectrum(path)
    with _astropy(path) as hdul:
        order = np.argsort(hdul[1].data["spectral"], kind="stable")
        assert np.array_equal(spectrum.wave_aa, hdul[1].data["spectral"][order].astype(float))
        assert np.array_equal(spectrum.flux, hdul[1].data["flux"][order].astype(float))


def test_the_real_mrs_coadd_is_read_from_the_bytes_as_astropy_reads_it() -> None:
    (path,) = [f.path for f in bundled_files(archive="lamost") if f.path.parent.name == "dr7-mrs"]
    _assert_columns_are_astropys(path, {"LOGLAM", "FLUX", "IVAR", "ANDMASK"}, index=2)
    spectrum = read_spectrum(path)
    with _astropy(path) as hdul:
        red = hdul["COADD_R"]
        order = np.argsort(red.data["LOGLAM"], kind="stable")
        assert np.array_equal(spectrum.flux, red.data["FLUX"][order].astype(float))
        assert np.array_equal(spectrum.mask, red.data["ANDMASK"][order] != 0)
        assert spectrum.meta.snr == red.header["SNR"]


def test_an_mrs_coadd_without_a_column_the_reader_needs_is_refused_by_name(
    tmp_path: Path,
) -> None:
    # The real MRS file with COADD_R's LOGLAM column renamed: still an MRS file by its
    # header, and the error names the file, the table and the column (a bare KeyError before).
    (real,) = [f.path for f in bundled_files(archive="lamost") if f.path.parent.name == "dr7-mrs"]
    data = gzip.decompress(real.read_bytes())
    table = data.rindex(b"XTENSION= 'BINTABLE'", 0, data.index(b"'COADD_R '"))
    at = data.index(b"= 'LOGLAM  '", table)
    broken = tmp_path / real.name.removesuffix(".gz")
    broken.write_bytes(data[:at] + b"= 'LOGWAVE '" + data[at + 12 :])
    with pytest.raises(SpectrumError) as caught:
        read_spectrum(broken)
    assert caught.value.path == str(broken)
    assert caught.value.reason == "the COADD_R table has no LOGLAM column"


def test_an_extension_header_is_parsed_once_for_identifying_and_reading(data_dir: Path) -> None:
    fits_file = FitsFile.open(
        data_dir / "lamost-dr8-table/spec-58397-EG014118N254444M01_sp03-031.fits"
    )
    first = fits_file.extension(1)
    assert first is not None and fits_file.extension(1) is first
    assert fits_file.extension_header(1) is first[0]
    assert fits_file.extension(2) is None


def test_an_ssap_table_with_scaled_columns_is_read_by_astropy(tmp_path: Path) -> None:
    # TZEROn/TSCALn: the values are not the bytes, so astropy reads the table.
    real = next(f.path for f in bundled_files(archive="ondrejov") if f.path.parent.name == "ssap")
    with _astropy(real) as hdul:
        table = hdul[1]
        raw = np.round((table.data["spectral"] - 6000.0) * 100).astype(np.int32)
        scaled = fits.BinTableHDU.from_columns(
            [
                fits.Column(name="spectral", format="J", array=raw),
                fits.Column(name="flux", format="D", array=table.data["flux"]),
            ],
            header=table.header,
        )
        scaled.header["TSCAL1"], scaled.header["TZERO1"] = 0.01, 6000.0
        fits.HDUList([hdul[0].copy(), scaled]).writeto(tmp_path / "scaled.fits")
    path = tmp_path / "scaled.fits"
    assert columns(FitsFile.open(path), 1, ("SPECTRAL", "FLUX")) is None
    spectrum = read_spectrum(path)
    with _astropy(path) as hdul:
        order = np.argsort(hdul[1].data["spectral"], kind="stable")
        assert np.array_equal(spectrum.wave_aa, hdul[1].data["spectral"][order].astype(float))
        assert np.array_equal(spectrum.flux, hdul[1].data["flux"][order].astype(float))


def test_dr8_tables_are_read_from_the_bytes_as_astropy_reads_them(
    data_dir: Path, tmp_path: Path
) -> None:
    # The plain tables of DR8+ files are viewed in the file's bytes; every column read must
    # be astropy's, values and types, also with other columns of other types around them.
    made = _dr8_like(
        tmp_path / "mixed.fits",
        _table_columns(3909, np.random.default_rng(1)),
        primary=data_dir / "lamost-dr8-table/spec-58397-EG014118N254444M01_sp03-031.fits",
    )
    for path in (data_dir / "lamost-dr8-table/spec-58397-EG014118N254444M01_sp03-031.fits", made):
        _assert_columns_are_astropys(path, {"FLUX", "IVAR", "WAVELENGTH", "ANDMASK"})
    spectrum = read_spectrum(made)
    with _astropy(made) as hdul:
        assert np.array_equal(spectrum.flux, hdul[1].data[0]["FLUX"].astype(float))
        assert spectrum.mask is not None
        assert np.array_equal(spectrum.mask, hdul[1].data[0]["ANDMASK"] != 0)


def test_a_table_with_shaped_columns_is_left_to_astropy(data_dir: Path, tmp_path: Path) -> None:
    primary = data_dir / "lamost-dr8-table/spec-58397-EG014118N254444M01_sp03-031.fits"
    rng = np.random.default_rng(2)
    plain = _dr8_like(tmp_path / "plain.fits", _table_columns(3909, rng), primary=primary)
    rng = np.random.default_rng(2)
    shaped = _dr8_like(
        tmp_path / "shaped.fits", _table_columns(3909, rng, dim="(3909)"), primary=primary
    )
    assert columns(FitsFile.open(shaped), 1, ("FLUX",)) is None
    assert np.array_equal(read_spectrum(shaped).flux, read_spectrum(plain).flux)


def test_a_truncated_dr8_table_is_refused_at_once_with_its_sizes(
    data_dir: Path, tmp_path: Path
) -> None:
    data = (data_dir / "lamost-dr8-table/spec-58397-EG014118N254444M01_sp03-031.fits").read_bytes()
    cut = tmp_path / "spec-cut.fits"
    cut.write_bytes(data[: len(data) - 4 * 2880])
    says = r"truncated: the file ends inside HDU 1's data unit: its header promises \d+ bytes"
    with pytest.raises(SpectrumError, match=says):
        read_spectrum(cut)


def test_releases_and_forms(data_dir: Path) -> None:
    dr1 = read_spectrum(data_dir / "lamost-dr1/spec-55862-B6212_sp06-003.fits")
    dr2 = read_spectrum(data_dir / "lamost-dr2/spec-56257-GAC089N38V2_sp01-009.fit")
    dr7 = read_spectrum(data_dir / "lamost-dr7/spec-58397-EG014118N254444M01_sp03-031.fits")
    assert (dr1.meta.form, dr1.meta.extra["release"]) == ("lrs-image-dr1", "DR1")
    assert (dr2.meta.form, dr2.meta.extra["release"]) == ("lrs-image", "DR2-DR5")
    assert dr7.meta.extra["release"] == "DR7"
    assert dr1.meta.extra["subclass"] == "F9"
    # The published designation and the published S/N of the bundled manifest.
    assert dr1.meta.designation == "LAMOST J063715.90+271356.5"
    assert dr2.meta.snr == pytest.approx(182.46)


def test_ondrejov_forms_of_the_same_observation_agree(data_dir: Path) -> None:
    ssap = read_spectrum(data_dir / "ondrejov-ssap/uk220017.fits")
    raw = read_spectrum(data_dir / "ondrejov-raw/uk220017.fits")
    assert ssap.id == "ivo://asu.cas.cz/stel/ccd700/uk220017"
    assert raw.id == "uk220017"
    assert ssap.meta.object == raw.meta.object == "gamma Cas"
    assert raw.meta.ra == pytest.approx(ssap.meta.ra, abs=1e-3)
    assert raw.meta.dec == pytest.approx(ssap.meta.dec, abs=1e-3)
    assert raw.meta.mjd == pytest.approx(ssap.meta.mjd, abs=0.01)
    assert raw.wave_aa[0] < ssap.wave_aa[0] and raw.wave_aa[-1] > ssap.wave_aa[-1]
    assert raw.flux_unit == "ADU" and ssap.flux_unit == "relative"


def test_archive_is_detected_from_the_header_not_the_path(data_dir: Path, tmp_path: Path) -> None:
    lamost = tmp_path / "ondrejov-a201504150031.fit"
    shutil.copy(data_dir / "lamost-dr1/spec-55862-B6212_sp06-003.fits", lamost)
    ondrejov = tmp_path / "spec-55862-B6212_sp06-003.fits"
    shutil.copy(data_dir / "ondrejov-ssap/a201504150031.fits", ondrejov)
    gz_without_suffix = tmp_path / "plain-name.fits"
    gz_without_suffix.write_bytes(
        gzip.compress((data_dir / "ondrejov-raw/uk220017.fits").read_bytes())
    )
    assert read_spectrum(lamost).meta.archive == "lamost"
    assert read_spectrum(ondrejov).meta.archive == "ondrejov"
    assert read_spectrum(ondrejov).meta.form == "ssap"
    assert read_spectrum(gz_without_suffix).meta.form == "raw"


def test_gzipped_and_plain_read_identically(data_dir: Path, tmp_path: Path) -> None:
    plain = data_dir / "lamost-dr1/spec-55862-B6212_sp06-003.fits"
    packed = tmp_path / "spec-55862-B6212_sp06-003.fits.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = read_spectrum(plain), read_spectrum(packed)
    assert np.array_equal(a.flux, b.flux) and a.id == b.id


def test_one_gzip_member_or_several_read_as_the_plain_file(data_dir: Path, tmp_path: Path) -> None:
    """A single member inflates in one libdeflate call; several members, NUL padding after
    the member or a trailer that lies take the streaming path. All read as the plain file,
    or are refused as damaged."""
    plain = (data_dir / "lamost-dr1/spec-55862-B6212_sp06-003.fits").read_bytes()
    one = gzip.compress(plain, mtime=0)
    forms = {
        "one member": one,
        "two members": gzip.compress(plain[:50_000], mtime=0) + gzip.compress(plain[50_000:]),
        "NUL padding": one + bytes(512),
    }
    assert _inflate_whole(one) == plain
    assert all(_inflate_whole(forms[name]) is None for name in ("two members", "NUL padding"))
    expected = read_spectrum(data_dir / "lamost-dr1/spec-55862-B6212_sp06-003.fits")
    for name, packed in forms.items():
        path = tmp_path / f"{name.replace(' ', '-')}.fits.gz"
        path.write_bytes(packed)
        got = read_spectrum(path)
        assert np.array_equal(got.flux, expected.flux), name
        assert np.array_equal(got.ivar, expected.ivar), name
        assert replace(got.meta, source="") == replace(expected.meta, source=""), name
    lying = tmp_path / "lying.fits.gz"  # the trailer's size field one byte short
    lying.write_bytes(one[:-4] + (len(plain) - 1).to_bytes(4, "little"))
    assert _inflate_whole(lying.read_bytes()) is None
    with pytest.raises(SpectrumError, match="gzip stream is truncated or corrupt"):
        read_spectrum(lying)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"hello world, this is not FITS", "not a FITS file"),
        (b"\x1f\x8b\x08\x00garbage", "gzip"),
    ],
)
def test_unreadable_files_name_the_file_and_the_problem(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "bad.fits"
    path.write_bytes(content)
    with pytest.raises(SpectrumError) as info:
        read_spectrum(path)
    assert str(path) in str(info.value) and reason in info.value.reason


def test_truncated_data_and_unknown_layout(data_dir: Path, tmp_path: Path) -> None:
    data = (data_dir / "lamost-dr1/spec-55862-B6212_sp06-003.fits").read_bytes()
    cut = tmp_path / "cut.fits"
    cut.write_bytes(data[:20000])
    with pytest.raises(SpectrumError, match="truncated"):
        read_spectrum(cut)
    image = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((3, 4, 5), np.float32)).writeto(image)
    with pytest.raises(SpectrumError, match="known forms: lamost-lrs-image, lamost-lrs-table"):
        read_spectrum(image)


# --- inputs that lie or are not files (issue 13, items 2, 3 and 16) ----------------------

DR1 = "lamost-dr1/spec-55862-B6212_sp06-003.fits"


def _with_card(data: bytes, key: str, value: str) -> bytes:
    """``data`` with the first header card of ``key`` replaced by ``KEY = value``."""
    at = 0
    while True:
        at = data.index(f"{key:<8}=".encode(), at)
        if at % 80 == 0:
            break
        at += 1
    card = f"{key:<8}= {value}".ljust(80).encode("latin-1")
    return data[:at] + card + data[at + 80 :]


@pytest.mark.timeout(30)
def test_fifos_and_devices_are_refused_without_being_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.fits"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes: never
    device = tmp_path / "zero.fits"
    device.symlink_to("/dev/zero")  # reading it would never end
    for path, kind in ((fifo, "FIFO"), (device, "character device")):
        with pytest.raises(SpectrumError) as info:
            read_spectrum(path)
        assert kind in info.value.reason and "not a regular file" in info.value.reason


@pytest.mark.timeout(60)
def test_a_gzip_bomb_is_refused_by_what_the_header_promises(data_dir: Path, tmp_path: Path) -> None:
    real = (data_dir / DR1).read_bytes()
    bomb = tmp_path / "bomb.fits.gz"  # a real spectrum, then 256 MiB of zeros: 250 kB packed
    with gzip.open(bomb, "wb", compresslevel=9) as handle:
        handle.write(real)
        zeros = bytes(1 << 24)
        for _ in range(16):
            handle.write(zeros)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(SpectrumError) as info:
        read_spectrum(bomb)
    assert "inflate" in info.value.reason and "promise" in info.value.reason
    huge = tmp_path / "huge.fits.gz"  # a header promising 40 GB: refused before inflating it
    promised = _with_card(_with_card(real, "NAXIS1", "10000000"), "NAXIS2", "1000")
    huge.write_bytes(gzip.compress(promised))
    with pytest.raises(SpectrumError, match="promises"):
        read_spectrum(huge)
    slack = tmp_path / "padded.fits.gz"  # a few trailing blocks of padding are tolerated
    slack.write_bytes(gzip.compress(real + bytes(4 * 2880)))
    assert np.array_equal(read_spectrum(slack).flux, read_spectrum(data_dir / DR1).flux)


def test_negative_axis_lengths_are_refused(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "negative.fits"
    path.write_bytes(_with_card((data_dir / DR1).read_bytes(), "NAXIS1", "-5"))
    with pytest.raises(SpectrumError) as info:
        read_spectrum(path)
    assert "NAXIS1 = -5" in info.value.reason


def test_an_image_with_more_rows_than_its_layout_names_is_refused(
    data_dir: Path, tmp_path: Path
) -> None:
    header = fits.getheader(data_dir / DR1)
    rows = np.tile(fits.getdata(data_dir / DR1), (13, 1))[:64]  # 64 rows, EXTEN0 names 5
    path = tmp_path / "tall.fits"
    fits.PrimaryHDU(rows, header=header).writeto(path)
    with pytest.raises(SpectrumError) as info:
        read_spectrum(path)
    assert "wrong layout" in info.value.reason and "64" in info.value.reason


def test_descending_wavelengths_are_read_in_ascending_order(data_dir: Path, tmp_path: Path) -> None:
    ssap = data_dir / "ondrejov-ssap/uk220017.fits"
    with fits.open(ssap) as hdul:
        hdul[1].data = hdul[1].data[::-1].copy()
        hdul.writeto(tmp_path / "ssap-reversed.fits")
    raw = data_dir / "ondrejov-raw/uk220017.fits"
    with _astropy(raw) as hdul:
        head, flux = hdul[0].header, hdul[0].data
        step = head["CDELT1"]
        head["CRVAL1"] = head["CRVAL1"] + (flux.size - 1) * step
        head["CDELT1"] = -step
        fits.PrimaryHDU(flux[::-1].copy(), header=head).writeto(
            tmp_path / "raw-reversed.fits", output_verify="silentfix"
        )
    for original, reversed_ in ((ssap, "ssap-reversed.fits"), (raw, "raw-reversed.fits")):
        a, b = read_spectrum(original), read_spectrum(tmp_path / reversed_)
        assert np.allclose(a.wave_aa, b.wave_aa, rtol=0, atol=1e-6)
        assert np.array_equal(a.flux, b.flux) and a.id == b.id


def test_non_ascii_header_values_give_distinct_ids(data_dir: Path, tmp_path: Path) -> None:
    real = (data_dir / DR1).read_bytes()
    ids = []
    for i, name in enumerate((b"spec-\xe9", b"spec-\xe8", "spec-é".encode(), b"spec-\\xe9x")):
        value = b"'" + name + b".fits'"
        path = tmp_path / f"{i}.fits"
        path.write_bytes(_with_card(real, "FILENAME", value.decode("latin-1")))
        ids.append(read_spectrum(path).id)
    assert ids[:3] == ["spec-\\xe9", "spec-\\xe8", "spec-é"]
    assert len(set(ids)) == len(ids) and not any("\ufffd" in i for i in ids)


def test_every_gzip_suffix_names_the_same_spectrum(data_dir: Path, tmp_path: Path) -> None:
    packed = gzip.compress((data_dir / "ondrejov-raw/uk220017.fits").read_bytes())
    for suffix in (".fit.gz", ".fts.gz", ".FITS.GZ"):
        path = tmp_path / f"copy{suffix}"
        path.write_bytes(packed)
        assert read_spectrum(path).id == "uk220017"  # FILENAME's stem, the .fit stripped


def test_impossible_header_values_are_unknown_not_numbers() -> None:
    from spectraldl.core.spectrum import SpectrumMeta

    lying = SpectrumMeta(id="x", archive="lamost", ra=1000.0, dec=-91.0, snr=-5.0)
    assert np.isnan(lying.ra) and np.isnan(lying.dec) and np.isnan(lying.snr)
    fine = SpectrumMeta(id="y", archive="lamost", ra=359.9, dec=-90.0, snr=0.5)
    assert (fine.ra, fine.dec, fine.snr) == (359.9, -90.0, 0.5)


@pytest.mark.parametrize("path", [f.path for f in bundled_files()], ids=lambda p: p.name)
def test_every_header_keyword_reads_as_astropy_reads_it(path: Path) -> None:
    """Keys, first-occurrence values and absent keys of the fast header, against astropy's."""
    ours = FitsFile.open(path).header
    with _astropy(path) as hdul:
        theirs = hdul[0].header
        valued = [card.keyword for card in theirs.cards if card.image[8:10] == "= "]
        keywords = [k for k in dict.fromkeys(valued) if k not in ("COMMENT", "HISTORY")]
        assert [k for k in ours if len(k) <= 8] == [k for k in keywords if len(k) <= 8]
        for key in keywords:
            if len(key) > 8:  # HIERARCH cards: astropy's extension, not read here
                continue
            expected = theirs[key]
            got = ours[key]
            if got is None:  # a card with no value: astropy gives its Undefined (printed '')
                assert expected is None or not str(expected), key
            elif isinstance(expected, float):
                assert got == pytest.approx(expected, rel=1e-15), key
            elif isinstance(expected, str):
                assert got == expected.rstrip(), key
            else:
                assert got == expected and type(got) is type(expected), key
    assert "NO_SUCH" not in ours and ours.get("NO_SUCH", 7) == 7 and 5 not in ours
    with pytest.raises(KeyError):
        ours["NO_SUCH"]


@pytest.mark.parametrize(
    "value",
    ["it's", "a / b", "''", "'", "x'' / y", "ends in a quote'", "  lead", "O'Neil's 'star'"],
)
def test_quoted_header_strings_read_back_as_astropy_writes_them(value: str) -> None:
    """Quotes written doubled, slashes and blanks inside a string value, a comment after.

    FITS 4.0 sect. 4.2.1.1: astropy's own reader takes ``'x'''' / y'`` for ``x''``;
    the standard, and this reader, for ``x'' / y``.
    """
    from spectraldl.io.archives.fitsfile import parse_header

    cards = fits.Header([("SIMPLE", True), ("OBJECT", value, "a comment / with a slash")])
    header, _ = parse_header(cards.tostring().encode("ascii"))
    assert header["OBJECT"] == value.rstrip()


def test_headers_of_one_layout_share_an_index_and_keep_their_own_values() -> None:
    """The card index is built once per layout of keywords, bounded; values stay per header."""
    from spectraldl.io.archives import fitsfile

    def header(**cards: object) -> fitsfile.Header:
        block = fits.Header([("SIMPLE", True), *cards.items()]).tostring().encode("ascii")
        return fitsfile.parse_header(block)[0]

    first, second = header(OBJECT="a", RA=1.5), header(OBJECT="b", RA=2.5)
    assert (first["OBJECT"], first["RA"], second["OBJECT"], second["RA"]) == ("a", 1.5, "b", 2.5)
    assert first._index is second._index
    swapped = header(RA=3.5, OBJECT="c")
    assert swapped._index is not first._index and (swapped["OBJECT"], swapped["RA"]) == ("c", 3.5)
    for n in range(2 * fitsfile._MAX_INDEXES):
        assert header(**{f"KEY{n}": n})[f"KEY{n}"] == n
    assert len(fitsfile._INDEXES) <= fitsfile._MAX_INDEXES


def test_a_long_header_is_read_but_its_index_is_not_kept() -> None:
    """A file with a huge header (a hostile download, say) cannot leave megabytes behind in
    the shared index table once it is closed: only headers of a normal size are kept."""
    from spectraldl.io.archives import fitsfile

    many = fitsfile._MAX_SHARED_CARDS + 1
    cards = [("SIMPLE", True), *((f"K{n}", n) for n in range(many))]
    block = fits.Header(cards).tostring().encode("ascii")
    fitsfile._INDEXES.clear()
    header = fitsfile.parse_header(block)[0]
    assert (header["K0"], header[f"K{many - 1}"], len(header)) == (0, many - 1, many + 1)
    assert not fitsfile._INDEXES
    normal = fitsfile.parse_header(fits.Header(cards[:100]).tostring().encode("ascii"))[0]
    assert normal["K98"] == 98 and list(fitsfile._INDEXES.values()) == [normal._index]


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_header_longer_than_the_limit_is_refused_naming_the_file(
    tmp_path: Path, gzipped: bool
) -> None:
    """A plain file is held to the same header limit as a gzipped one: no index of millions
    of cards is built. A header just within the limit is still read."""
    from spectraldl.io.archives import fitsfile

    per_block = fitsfile.BLOCK // fitsfile.CARD

    def write(name: str, cards: int) -> Path:
        first = fits.Header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0)]).tostring()[:240]
        more = "".join(str(fits.Card(f"K{n}", n)) for n in range(cards - 4))
        data = (first + more + f"{'END':<80}").encode("ascii")
        path = tmp_path / name
        path.write_bytes(gzip.compress(data) if gzipped else data)
        return path

    most = fitsfile.MAX_HEADER_BYTES // fitsfile.CARD
    assert FitsFile.open(write("fits.fits", most)).header[f"K{most - 5}"] == most - 5
    too_long = write("long.fits", most + per_block)
    with pytest.raises(SpectrumError, match=f"first {fitsfile.MAX_HEADER_BYTES} "):
        FitsFile.open(too_long)
    with pytest.raises(SpectrumError, match=r"long\.fits"):
        FitsFile.open(too_long)
