"""Label lists: Excel's exports, wrong encodings, conflicts, ids matching nothing, re-runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from spectraldl.cli import main
from spectraldl.io.bundled import replicate_real_tree
from spectraldl.io.dataset import read_dataset
from spectraldl.io.labels import CLASSES, NO_LABEL, LabelError, read_labels
from spectraldl.jobs.ingest import IngestFailed, ingest

ROWS = "id,label\nuk220017.fits,emission\na201504150031,double-peak\n"


def test_a_utf8_bom_as_excel_writes_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeff".encode() + ROWS.replace("\n", "\r\n").encode())
    labels = read_labels(path)
    assert labels.lookup("uk220017") == CLASSES.index("emission")
    assert labels.lookup("a201504150031.fits") == CLASSES.index("double-peak")


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        ("utf-16", "not UTF-8 text (UTF-16"),
        ("utf-16-le", "not UTF-8 text (UTF-16"),
        ("latin-1", "not UTF-8 text: byte 58 (0xe9)"),
    ],
)
def test_other_encodings_are_a_clear_error_naming_the_file(
    tmp_path: Path, encoding: str, message: str
) -> None:
    path = tmp_path / f"{encoding}.csv"
    path.write_bytes((ROWS + "étoile.fits,absorption\n").encode(encoding))
    with pytest.raises(LabelError, match="save it as CSV UTF-8") as info:
        read_labels(path)
    assert str(path) in str(info.value) and message in str(info.value)
    result = CliRunner().invoke(
        main, ["ingest", str(tmp_path), "-o", str(tmp_path / "d.h5"), "--labels", str(path)]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert [line for line in result.output.splitlines() if line] == [f"Error: {info.value}"], (
        result.output
    )


def test_conflicting_duplicates_are_left_unlabelled_and_listed(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        ROWS
        + "uk220017,absorption\n"  # the same spectrum as uk220017.fits, another label
        + "a201504150031.fits,double-peak\n"  # a repeat that agrees: harmless
    )
    labels = read_labels(path)
    assert labels.lookup("uk220017") == NO_LABEL
    assert labels.lookup("uk220017.fits") == NO_LABEL
    assert labels.lookup("a201504150031") == CLASSES.index("double-peak")
    assert set(labels.conflicts) == {"uk220017.fits", "uk220017"}
    assert labels.conflicts["uk220017"] == ("emission", "absorption")


def test_several_lists_are_read_as_one_and_disagreements_between_them_are_conflicts(
    inputs: Path, tmp_path: Path
) -> None:
    first = tmp_path / "first.csv"
    first.write_text("id,label\nuk220017.fits,emission\nspec-55862-B6212_sp06-003,absorption\n")
    second = tmp_path / "second.csv"
    second.write_text(
        "id,label\na201504150031,double-peak\nspec-55862-B6212_sp06-003.fits,emission\n"
    )
    out = tmp_path / "d.h5"
    result = CliRunner().invoke(
        main,
        ["ingest", str(inputs), "-o", str(out), "--labels", str(first), "--labels", str(second)],
    )
    assert result.exit_code == 0, result.output
    assert f"labels {first}, {second}: 2 ids have conflicting labels" in result.output
    assert _labels_by_stem(out) == {
        "uk220017": CLASSES.index("emission"),
        "a201504150031": CLASSES.index("double-peak"),
        "spec-55862-B6212_sp06-003": NO_LABEL,
    }
    # The same list twice, however spelled, is refused before anything is written.
    again = tmp_path / "again.h5"
    spelled = tmp_path / "sub" / ".." / "first.csv"
    (tmp_path / "sub").mkdir()
    result = CliRunner().invoke(
        main,
        ["ingest", str(inputs), "-o", str(again), "--labels", str(first), "--labels", str(spelled)],
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"Error: {spelled}: given twice (also as {first}); give each list once" in result.output
    assert not again.exists()
    # Spelled alike, it is named once.
    with pytest.raises(LabelError) as twice:
        read_labels(first, str(first))
    assert str(twice.value) == f"{first}: given twice; give each list once"


class _Stopped(Exception):
    """Raised by a progress callback to leave an ingest unfinished, its first chunk kept."""


def _stop_after_a_chunk(done: int, _total: int) -> None:
    if done:
        raise _Stopped


def test_a_run_resumed_with_its_lists_in_another_order_resumes(tmp_path: Path) -> None:
    # The lists are read as one whatever their order, but the manifest digested their texts
    # in order: the same lists named the other way round were "an unfinished ingest of other
    # paths or settings", to be deleted.
    tree, out = tmp_path / "tree", tmp_path / "o.h5"
    replicate_real_tree(tree, 600)  # three chunks
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text("id,label\nspec-55862-B6212_sp06-003-r0000000,emission\n")
    second.write_text("id,label\nspec-55862-B6212_sp06-007-r0000001.fits,absorption\n")
    with pytest.raises(_Stopped):
        ingest([tree], out, labels_csv=[first, second], progress=_stop_after_a_chunk)
    kept = list((tmp_path / "o.h5.parts").glob("chunk-*"))
    assert kept and not out.exists()
    ingest([tree], out, labels_csv=[second, first])
    assert not (tmp_path / "o.h5.parts").exists()
    reference = tmp_path / "reference.h5"
    ingest([tree], reference, labels_csv=[first, second])
    resumed, whole = read_dataset(out), read_dataset(reference)
    assert list(resumed.ids) == list(whole.ids)
    assert np.array_equal(resumed.labels, whole.labels)
    assert {CLASSES.index("emission"), CLASSES.index("absorption")} <= set(whole.labels.tolist())
    # Another list resumes too: the chunks kept hold no labels, the merge sets the lists'.
    third = tmp_path / "third.csv"
    third.write_text("id,label\nspec-55862-B6212_sp06-003-r0000000,absorption\n")
    again, whole = tmp_path / "again.h5", tmp_path / "whole.h5"
    with pytest.raises(_Stopped):
        ingest([tree], again, labels_csv=[first, second], progress=_stop_after_a_chunk)
    assert list((tmp_path / "again.h5.parts").glob("chunk-*"))
    summary = ingest([tree], again, labels_csv=[second, third])
    ingest([tree], whole, labels_csv=[second, third])
    assert np.array_equal(read_dataset(again).labels, read_dataset(whole).labels)
    assert summary.labels is not None and summary.labels.line().endswith("every id matched")


@pytest.fixture
def inputs(data_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("ondrejov-ssap/uk220017.fits", "ondrejov-ssap/a201504150031.fits", DR1):
        shutil.copy(data_dir / name, folder)
    return folder


DR1 = "lamost-dr1/spec-55862-B6212_sp06-003.fits"


def _labels_by_stem(path: Path) -> dict[str, int]:
    data = read_dataset(path)
    stems = [Path(s).name.removesuffix(".fits") for s in data.meta["source"]]
    return dict(zip(stems, data.labels.tolist(), strict=True))


def test_ids_matching_nothing_and_conflicts_are_reported(inputs: Path, tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        ROWS + "spec-00000-NOWHERE_sp01-001,emission\nghost.fits,absorption\n"
        "spec-55862-B6212_sp06-003,absorption\nspec-55862-B6212_sp06-003.fits,emission\n"
    )
    out = tmp_path / "d.h5"
    summary = ingest([inputs], out, labels_csv=path)
    assert summary.labels is not None
    assert summary.labels.unmatched == ["spec-00000-NOWHERE_sp01-001", "ghost.fits"]
    assert len(summary.labels.conflicting) == 2
    line = summary.line()
    assert "2 ids match no spectrum (e.g. spec-00000-NOWHERE_sp01-001, ghost.fits)" in line
    assert "2 ids have conflicting labels" in line
    assert _labels_by_stem(out) == {
        "uk220017": CLASSES.index("emission"),
        "a201504150031": CLASSES.index("double-peak"),
        "spec-55862-B6212_sp06-003": NO_LABEL,
    }
    # --strict refuses both kinds, writing nothing.
    strict_out = tmp_path / "strict.h5"
    with pytest.raises(IngestFailed) as refused:
        ingest([inputs], strict_out, labels_csv=path, strict=True)
    # Refused before any spectrum is read: nothing to say of the ids that match none.
    assert str(refused.value) == (
        f"--strict: labels {path}: 2 ids have conflicting labels, left unlabelled "
        "(e.g. spec-55862-B6212_sp06-003, spec-55862-B6212_sp06-003.fits)"
    )
    unmatched = tmp_path / "unmatched.csv"
    unmatched.write_text(ROWS + "ghost.fits,absorption\n")
    with pytest.raises(IngestFailed, match=r"1 ids match no spectrum \(e.g. ghost.fits\)"):
        ingest([inputs], strict_out, labels_csv=unmatched, strict=True)
    assert not strict_out.exists()
    result = CliRunner().invoke(
        main, ["ingest", str(inputs), "-o", str(strict_out), "--labels", str(unmatched), "--strict"]
    )
    assert result.exit_code == 1 and "ghost.fits" in result.output
    assert "Traceback" not in result.output and not strict_out.exists()


def test_labels_given_on_a_rerun_are_applied_to_the_rows_already_there(
    inputs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "d.h5"
    ingest([inputs], out)
    assert set(_labels_by_stem(out).values()) == {NO_LABEL}
    path = tmp_path / "labels.csv"
    path.write_text(ROWS)
    summary = ingest([inputs], out, labels_csv=path)
    assert summary.added == 0 and summary.already_present == 3
    assert summary.labels is not None and summary.labels.relabelled == 2
    assert "2 spectra already there relabelled" in summary.line()
    labels = _labels_by_stem(out)
    assert labels["uk220017"] == CLASSES.index("emission")
    assert labels["a201504150031"] == CLASSES.index("double-peak")
    assert labels["spec-55862-B6212_sp06-003"] == NO_LABEL
    # A corrected list changes them again; the flux is untouched.
    before = read_dataset(out).X
    path.write_text("id,label\nuk220017,absorption\n")
    assert ingest([inputs], out, labels_csv=path).labels.relabelled == 1
    assert _labels_by_stem(out)["uk220017"] == CLASSES.index("absorption")
    assert np.array_equal(read_dataset(out).X, before)


def test_a_list_of_a_header_alone_says_so_not_that_every_id_matched(
    inputs: Path, tmp_path: Path
) -> None:
    """A header-only export (the wrong file, or rows lost) was reported as 'every id matched'."""
    path = tmp_path / "labels.csv"
    path.write_text("id,label\n", encoding="utf-8")
    result = CliRunner().invoke(
        main, ["ingest", str(inputs), "-o", str(tmp_path / "d.h5"), "--labels", str(path)]
    )
    assert result.exit_code == 0, result.output
    assert f"labels {path}: no ids under its header" in result.output
    assert "every id matched" not in result.output


def test_ingest_help_gives_every_label_code_it_reads() -> None:
    """The help said 0-3 while 4 (noise) is read too, and the error for 5 says 0-4."""
    result = CliRunner().invoke(main, ["ingest", "--help"], terminal_width=200)
    assert "class name or code 0-4" in result.output


def test_ingest_strict_refusing_a_list_is_run_again_with_the_list_corrected(
    inputs: Path, tmp_path: Path
) -> None:
    """--strict refused an id matching no spectrum and kept OUT.parts of that list: the
    command with the corrected list was then refused as 'an unfinished ingest of other
    settings', and re-running the first one would only be refused again. Now the kept
    chunks (no labels in them) serve the mended command."""
    path = tmp_path / "labels.csv"
    path.write_text(ROWS + "ghost.fits,absorption\n", encoding="utf-8")
    out = tmp_path / "d.h5"
    command = ["ingest", str(inputs), "-o", str(out), "--labels", str(path), "--strict"]
    refused = CliRunner().invoke(main, command)
    assert refused.exit_code == 1 and "ghost.fits" in refused.output
    parts = out.with_name("d.h5.parts")
    assert f"the spectra read are kept in {parts}: mend the list" in refused.output
    kept = sorted(p.name for p in parts.glob("chunk-*"))
    assert kept and not out.exists()
    path.write_text(ROWS, encoding="utf-8")
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.output
    assert f"labels {path}: every id matched" in result.output
    assert not parts.exists()
