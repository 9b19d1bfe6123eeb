"""Discovery: links followed once, loops and non-files reported, every reader suffix found."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from process_helpers import run_unprivileged

from spectraldl.classify.plan import plan_chunks
from spectraldl.cli import main
from spectraldl.io.archives.fitsfile import SPECTRUM_SUFFIXES
from spectraldl.io.discovery import discover, walk


def _tree(root: Path) -> Path:
    """Spectrum names of every suffix, links to files and folders, a loop, a FIFO, a device."""
    (root / "a" / "b").mkdir(parents=True)
    (root / "elsewhere").mkdir()
    for name in ("a/x.fits", "a/b/y.FIT.GZ", "z.fts", "w.fit", "v.fits.gz", "u.fts.gz"):
        (root / name).write_bytes(b"SIMPLE  =")
    (root / "notes.txt").write_text("not a spectrum name")
    (root / "elsewhere" / "o.fits").write_bytes(b"SIMPLE  =")
    tree = root / "tree"
    tree.mkdir()
    for name in ("a", "z.fts", "w.fit", "v.fits.gz", "u.fts.gz", "notes.txt"):
        (tree / name).symlink_to(root / name)
    (tree / "a" / "b" / "loop").symlink_to(tree)  # leads back up: a loop
    (tree / "again").symlink_to(root / "a")  # the same folder twice: walked once
    (tree / "ext").symlink_to(root / "elsewhere")
    (tree / "self.fits").symlink_to("self.fits")
    (tree / "broken.fits").symlink_to("nowhere.fits")
    (tree / "zero.fits").symlink_to("/dev/zero")
    os.mkfifo(tree / "pipe.fits")
    return tree


def test_links_are_followed_once_and_bad_entries_reported(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    files, bad = discover([tree])
    names = sorted(os.path.relpath(f, tree) for f in files)
    assert names == sorted(
        ["a/x.fits", "a/b/y.FIT.GZ", "z.fts", "w.fit", "v.fits.gz", "u.fts.gz", "ext/o.fits"]
    )
    reasons = {os.path.relpath(b.path, tree): b.reason for b in bad}
    assert set(reasons) == {"a/b/loop", "self.fits", "broken.fits", "zero.fits", "pipe.fits"}
    assert "symlink loop" in reasons["a/b/loop"] and "symlink loop" in reasons["self.fits"]
    assert "broken symlink" in reasons["broken.fits"]
    assert "FIFO" in reasons["pipe.fits"] and "character device" in reasons["zero.fits"]


def test_a_file_reached_twice_is_listed_once(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    named = tree / "a" / "x.fits"
    files, _ = discover([named, tree, named, tmp_path / "elsewhere" / "o.fits"])
    assert len(files) == len({os.path.realpath(f) for f in files}) == 7
    with pytest.raises(FileNotFoundError):
        discover([tree / "missing"])


def test_classify_plans_what_ingest_walks(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    found = walk([tree])
    files = list(found)
    plan = plan_chunks([tree], chunk_files=2)
    chunks = list(plan.iter_chunks())
    assert plan.files == len(files) and plan.chunks == len(chunks) >= 2
    assert [c for chunk in chunks for c in chunk.files] == files
    assert sorted(e.path for e in plan.unread) == sorted(b.path for b in found.bad)


_AS_NOBODY = """
import json, sys
from spectraldl.io.discovery import discover
files, bad = discover([sys.argv[1]])
print(json.dumps({"files": files, "bad": [[b.path, b.reason] for b in bad]}))
"""


def test_an_unreadable_folder_is_reported() -> None:
    """Run as an unprivileged user (root reads every folder): the folder is listed, not skipped."""
    root = Path(tempfile.mkdtemp())
    try:
        root.chmod(0o755)
        (root / "open").mkdir()
        (root / "open" / "a.fits").write_bytes(b"SIMPLE  =")
        (root / "locked").mkdir()
        (root / "locked" / "b.fits").write_bytes(b"SIMPLE  =")
        (root / "locked").chmod(0)
        done = run_unprivileged(_AS_NOBODY, str(root))
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
    finally:
        (root / "locked").chmod(0o755)
        for path in sorted(root.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        root.rmdir()
    assert result["files"] == [str(root / "open" / "a.fits")]
    reason = "cannot read the folder (Permission denied); its files were not read"
    assert result["bad"] == [[str(root / "locked"), reason]]


def test_the_texts_name_every_suffix_the_walk_takes(tmp_path: Path) -> None:
    """`ingest --help` and docs/classify.md list what a tree is walked for: every suffix the
    walk accepts (.fts and the gzipped forms too), in any letter case."""
    for suffix in SPECTRUM_SUFFIXES:
        (tmp_path / f"x{suffix.upper()}").write_bytes(b"")
    assert len(list(walk([tmp_path]))) == len(SPECTRUM_SUFFIXES)
    help_text = " ".join(CliRunner().invoke(main, ["ingest", "--help"]).output.split())
    page = Path(__file__).resolve().parents[1] / "docs" / "classify.md"
    row = next(line for line in page.read_text().splitlines() if line.startswith("| `SOURCE...`"))
    for suffix in SPECTRUM_SUFFIXES:
        assert re.search(re.escape(suffix) + r"(?![\w.])", help_text), suffix
        assert f"`{suffix}`" in row, suffix
    assert "any letter case" in help_text and "any letter case" in row
