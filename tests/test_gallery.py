"""Gallery panels (`catalogue.gallery`): the fitted continuum, the measured peaks, the caption."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from web_support import chromium, chromium_missing

from spectraldl.catalogue.gallery import (
    _Panels,
    measurement_caption,
    read_gallery_entries,
    write_gallery,
)
from spectraldl.io.archives import read_spectrum
from spectraldl.prep.measure import HALPHA_VACUUM_AA, fit_halpha

DATA = Path(__file__).parent / "data"
CLASSES = ("emission", "absorption", "double-peak")


def row_for(path: Path, **measured: Any) -> dict[str, Any]:
    """A candidate row of ``path`` as the gallery reads it, measured unless ``measured`` says."""
    line, _ = fit_halpha(read_spectrum(path))
    return {
        "id": path.stem,
        "object": "star",
        "source": str(path),
        "predicted_class": "emission",
        "p_emission": 0.9,
        "p_absorption": 0.05,
        "p_double_peak": 0.05,
        "novelty": 1.0,
        "snr": 50.0,
        "quality_flags": "",
        **line.as_dict(),
        **measured,
    }


@pytest.mark.parametrize(
    "name,kind,n_peaks",
    [("uk220017.fits", "emission", 1), ("a201504150031.fits", "double-peak", 2)],
)
def test_panel_draws_the_fitted_continuum_and_the_measured_peaks(
    name: str, kind: str, n_peaks: int
) -> None:
    path = DATA / "ondrejov-ssap" / name
    panels = _Panels()
    panels.draw(row_for(path), CLASSES)
    line, fit = fit_halpha(read_spectrum(path))
    assert line.profile_type == kind and fit is not None
    assert panels.continuum in panels.zoom.get_lines() and panels.peaks in panels.zoom.get_lines()
    x, y = (np.asarray(v, dtype=float) for v in panels.continuum.get_data())
    assert x.size == 2 and x[0] < HALPHA_VACUUM_AA < x[1]
    np.testing.assert_allclose(y, fit.continuum_at(x))
    px, py = (np.asarray(v, dtype=float) for v in panels.peaks.get_data())
    assert px.size == n_peaks
    assert (np.abs(px - HALPHA_VACUUM_AA) < 6.0).all()
    assert (py > fit.continuum_at(px)).all()  # emission peaks stand above the continuum
    if n_peaks == 2:
        separation_kms = (px[1] - px[0]) / HALPHA_VACUUM_AA * 299_792.458
        assert separation_kms == pytest.approx(line.halpha_peak_sep_kms, rel=0.25)
    caption = panels.caption.get_text()
    assert caption.startswith(f"EW {line.halpha_ew_aa:.2f} ± ") and kind in caption
    assert "FWHM" in caption
    assert [t.get_text() for t in panels.legend.get_texts()] == ["masked", "continuum", "peaks"]


def test_caption_shows_the_catalogue_values_and_says_why_a_line_is_unmeasurable() -> None:
    path = DATA / "ondrejov-ssap" / "uk220017.fits"
    panels = _Panels()
    panels.draw(row_for(path, halpha_ew_aa=-12.345, profile_type="p-cygni"), CLASSES)
    assert panels.caption.get_text().startswith("EW -12.35 ± ")
    assert "p-cygni" in panels.caption.get_text()
    unmeasurable = {"profile_type": "unmeasurable", "halpha_flag": "masked core"}
    assert measurement_caption({**unmeasurable, "halpha_ew_aa": math.nan}) == (
        "H-alpha unmeasurable (masked core)"
    )
    double = {"halpha_ew_aa": -4.71, "halpha_ew_err_aa": 0.06, "profile_type": "double-peak"}
    double |= {"halpha_fwhm_kms": 404.0, "halpha_peak_sep_kms": 172.4, "halpha_vr": 1.02}
    assert measurement_caption(double) == (
        "EW -4.71 ± 0.06 Å   double-peak   FWHM 404 km/s   peaks 172 km/s apart   V/R 1.02"
    )


def test_a_table_without_measurements_is_captioned_from_the_spectrum(tmp_path: Path) -> None:
    path = DATA / "ondrejov-ssap" / "uk220017.fits"
    row = row_for(path)
    old = {k: v for k, v in row.items() if not (k.startswith("halpha_") or k == "profile_type")}
    panels = _Panels()
    panels.draw(old, CLASSES)
    line, _ = fit_halpha(read_spectrum(path))
    assert panels.caption.get_text().startswith(f"EW {line.halpha_ew_aa:.2f}")
    summary = write_gallery(pd.DataFrame([old]), tmp_path / "gallery")
    assert summary.images == 1 and not summary.failed


def test_a_redraw_stopped_while_saving_keeps_the_earlier_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images are written beside their name and renamed: a rerun stopped inside savefig (a
    full disk, a kill) leaves the earlier image whole (it left a part of one)."""
    from matplotlib.figure import Figure

    table = pd.DataFrame([row_for(DATA / "ondrejov-ssap" / "uk220017.fits")])
    write_gallery(table, tmp_path / "gallery")
    [image] = (tmp_path / "gallery").glob("*.png")
    before = image.read_bytes()

    def stopped(self: Figure, target: Any, **_kwargs: Any) -> None:
        Path(target).write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", stopped)
    summary = write_gallery(table, tmp_path / "gallery")
    assert summary.failed and image.read_bytes() == before


PWN = "</script><script>document.title='PWNED'</script>"
HOSTILE = ["<!--<script>", PWN, "Ondřejov & <b>ž</b>"]


def _hostile_gallery(folder: Path) -> Path:
    """A gallery of a real spectrum and two moved ones named to break out of the page's
    scripts, one class column named so too (another model's table)."""
    real = row_for(DATA / "ondrejov-ssap" / "uk220017.fits")
    rows = [{**real, "id": f"s{i}", "object": name} for i, name in enumerate(HOSTILE)]
    for row in rows[1:]:
        row["source"] = str(folder / "moved-away.fits")
    table = pd.DataFrame(rows)
    table.insert(7, "p_" + PWN, 0.0)
    return write_gallery(table, folder / "gallery").index


def test_names_that_close_or_comment_out_a_script_stay_text_in_the_gallery(
    tmp_path: Path,
) -> None:
    index = _hostile_gallery(tmp_path)
    page = index.read_text(encoding="utf-8")
    assert page.count("<script") == page.count("</script>") == 2 and "<!--" not in page
    assert [e["object"] for e in read_gallery_entries(index)] == HOSTILE


@pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))
def test_hostile_names_show_as_text_in_chromium_and_run_nothing(tmp_path: Path) -> None:
    index = _hostile_gallery(tmp_path)
    driver = chromium(tmp_path / "chromium-profile")
    try:
        driver.set_page_load_timeout(60)
        driver.get(index.as_uri())
        assert driver.title == "spectraldl candidates"
        objects = driver.execute_script(
            "return Array.from(document.querySelectorAll('#candidates tbody tr'))"
            ".map(tr => tr.cells[2].textContent)"
        )
        assert objects == HOSTILE
    finally:
        driver.quit()


@pytest.mark.parametrize("name", ["cost $^$ 10", "V* $\\alpha$ Cyg"])
def test_a_dollar_in_a_name_is_drawn_as_text_not_parsed_as_mathtext(
    tmp_path: Path, name: str
) -> None:
    row = {**row_for(DATA / "ondrejov-ssap" / "uk220017.fits"), "object": name}
    summary = write_gallery(pd.DataFrame([row]), tmp_path / "gallery")
    assert summary.images == 1 and not summary.failed
    panels = _Panels()
    panels.draw(row, CLASSES)
    assert name in panels.title.get_text() and not panels.title.get_parse_math()
