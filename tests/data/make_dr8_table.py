"""Build the DR8+ table-form test file from the real DR7 spectrum beside it.

No real DR8+ low-resolution file is available to the project, so this script
re-packs a real DR7 image-form spectrum (lamost-dr7/) into the layout LAMOST
publishes from DR8 on (LAMOST DR8 "Data Production Description", v2.0 FITS
format): the same primary header keywords with an empty primary data unit
(NAXIS = 0) and one BINTABLE extension, EXTNAME ``COADD``, holding a single row
whose array columns are FLUX, IVAR, WAVELENGTH, ANDMASK, ORMASK and
NORMALIZATION (float32, 3909 elements each). DATA_V is set to 'LAMOST DR8'.
The flux, ivar, wavelength and masks are the DR7 file's own values; the
NORMALIZATION column (the pipeline's continuum used for normalised spectra) is
not in DR7 and is written as ones.

Run from the repository root: ``python tests/data/make_dr8_table.py``.
"""

from pathlib import Path

import numpy as np
from astropy.io import fits

HERE = Path(__file__).parent
SOURCE = HERE / "lamost-dr7" / "spec-58397-EG014118N254444M01_sp03-031.fits"
TARGET = HERE / "lamost-dr8-table" / "spec-58397-EG014118N254444M01_sp03-031.fits"


def main() -> None:
    with fits.open(SOURCE) as hdul:
        header = hdul[0].header.copy()
        image = hdul[0].data.astype(np.float32)
    rows = [name.strip().lower() for name in header["EXTEN0"].split(",")]
    row = dict(zip(rows, image, strict=True))
    primary = fits.PrimaryHDU()
    for card in header.cards:
        if card.keyword in ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "EXTNAME"):
            continue
        if card.keyword in ("COMMENT", "HISTORY", ""):
            primary.header.append(card, end=True)
        else:
            primary.header[card.keyword] = (card.value, card.comment)
    primary.header["DATA_V"] = ("LAMOST DR8", "Data release version")
    primary.header["EXTEN0"] = ("COADD", "The extension name of the coadded spectrum")
    primary.header["N_EXTEN"] = (1, "The extension number")
    n = image.shape[1]
    columns = [
        fits.Column(name="FLUX", format=f"{n}E", array=row["flux"][None, :]),
        fits.Column(name="IVAR", format=f"{n}E", array=row["inverse"][None, :]),
        fits.Column(name="WAVELENGTH", format=f"{n}E", array=row["wavelength"][None, :]),
        fits.Column(name="ANDMASK", format=f"{n}E", array=row["andmask"][None, :]),
        fits.Column(name="ORMASK", format=f"{n}E", array=row["ormask"][None, :]),
        fits.Column(name="NORMALIZATION", format=f"{n}E", array=np.ones((1, n), np.float32)),
    ]
    table = fits.BinTableHDU.from_columns(columns, name="COADD")
    TARGET.parent.mkdir(exist_ok=True)
    fits.HDUList([primary, table]).writeto(TARGET, overwrite=True, output_verify="silentfix")


if __name__ == "__main__":
    main()
