"""The resumable-job protocol ingest and classify share: errors files, resume after a change,
--strict, duplicates, temporary space, one run per output, dead workers, full and read-only
disks, Ctrl-C."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
from classify_helpers import trained_model
from click.testing import CliRunner
from process_helpers import left_in_group, run_unprivileged

from spectraldl.classify import run as run_module
from spectraldl.classify.plan import ClassifyError
from spectraldl.classify.run import classify, classify_chunk, parts_dir
from spectraldl.cli import classify as classify_cli
from spectraldl.cli import ingest as ingest_cli
from spectraldl.cli import main
from spectraldl.cli import simulate as simulate_cli
from spectraldl.io.bundled import bundled_files, replicate_real_tree
from spectraldl.io.dataset import read_dataset
from spectraldl.io.predictions import read_predictions
from spectraldl.jobs import backends as backends_module
from spectraldl.jobs.backends import ProcessBackend
from spectraldl.jobs.engine import cut_files
from spectraldl.jobs.files import (
    WorkerDied,
    errors_csv_path,
    lock_path,
    output_lock,
    process_alive,
)
from spectraldl.jobs.ingest import IngestFailed, discover, ingest, read_chunk
from spectraldl.jobs.processes import task_modules
from spectraldl.ml.modelcard import load_model
from spectraldl.ml.pretrained import resolve_model
from spectraldl.simulate.archive import _chunk as simulate_chunk

LAMOST = [f.path for f in bundled_files(archive="lamost")]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_model(tmp_path_factory.mktemp("jobs-model"))


def _errors(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return {Path(row["path"]).name: row["reason"] for row in csv.DictReader(handle)}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it: its own process, so a crash shows as a crash."""
    return subprocess.run(
        [sys.executable, "-m", "spectraldl.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _tree(root: Path, files: Iterable[Path]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy(path, root / path.name)
    return root


class _StopAfter:
    """A backend that runs ``n`` tasks in this process (all when None), then is interrupted
    (Ctrl-C); the tasks it ran are listed in ``seen``."""

    name = "local"
    threads_per_task = 1

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.seen: list[Any] = []

    def warm_up(self, fn: Callable) -> None:
        """Nothing to start."""

    def run(self, fn: Callable, tasks: Iterable) -> Iterator:
        for i, task in enumerate(tasks):
            if i == self.n:
                raise KeyboardInterrupt
            self.seen.append(task)
            yield fn(task)


# --- errors files -------------------------------------------------------------------------


def test_every_output_has_its_own_errors_file(model_dir: Path, bad_tree, tmp_path: Path) -> None:
    root, expect, _ = bad_tree
    ingest([root], tmp_path / "all.h5")
    classify(model_dir, [root], tmp_path / "all.parquet")
    from_ingest = _errors(tmp_path / "all.h5.errors.csv")
    from_classify = _errors(tmp_path / "all.parquet.errors.csv")
    assert set(from_ingest) == set(expect) == set(from_classify)
    assert errors_csv_path(tmp_path / "all.h5") == tmp_path / "all.h5.errors.csv"
    assert not (tmp_path / "all.errors.csv").exists()


# --- resume after a change ----------------------------------------------------------------


def test_a_file_repaired_after_a_strict_failure_is_read_again(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree", LAMOST[:5])
    spare = LAMOST[5]
    (tree / spare.name).write_bytes(spare.read_bytes()[:3000])  # truncated
    out = tmp_path / "out.h5"
    with pytest.raises(IngestFailed, match=spare.name):
        ingest([tree], out, strict=True)
    assert (tmp_path / "out.h5.parts").exists()
    shutil.copy(spare, tree / spare.name)  # repaired
    summary = ingest([tree], out, strict=True)
    assert summary.added == 6 and not summary.errors
    assert str(tree / spare.name) in set(read_dataset(out).meta["source"])


def test_a_file_repaired_during_an_interrupted_classify_is_read_again(
    model_dir: Path, tmp_path: Path
) -> None:
    tree = _tree(tmp_path / "tree", LAMOST[:6])
    broken = tree / LAMOST[0].name  # the first file: in the first chunk
    broken.write_bytes(LAMOST[0].read_bytes()[:3000])
    out = tmp_path / "pred.parquet"
    with pytest.raises(KeyboardInterrupt):
        classify(model_dir, [tree], out, chunk_files=1, backend=_StopAfter(2))
    assert len(list(parts_dir(out).glob("chunk-*.parquet"))) == 2
    shutil.copy(LAMOST[0], broken)
    summary = classify(model_dir, [tree], out, chunk_files=1)
    assert summary.chunks_resumed == 1  # the second chunk; the first was read again
    assert summary.rows == 6 and not summary.errors
    assert str(broken.resolve()) in {str(Path(s).resolve()) for s in read_predictions(out).source}


def test_chunks_are_cut_where_the_file_names_say() -> None:
    names = [f"/a/{i:05d}/spec-{i * 7919 % 100_003}.fits.gz" for i in range(20_000)]
    chunks = list(cut_files(names, 64))
    assert [n for chunk in chunks for n in chunk] == names
    sizes = [len(chunk) for chunk in chunks[:-1]]
    assert min(sizes) >= 16 and max(sizes) <= 128 and 56 < np.mean(sizes) < 72
    assert [len(c) for c in cut_files(names[:50], 1)] == [1] * 50
    # A file added and another deleted change the chunks around them only.
    changed = [*names[:5_000], "/a/new/spec-added.fits.gz", *names[5_000:12_000], *names[12_001:]]
    before = {tuple(chunk) for chunk in chunks}
    after = {tuple(chunk) for chunk in cut_files(changed, 64)}
    assert len(after - before) <= 6 and len(before - after) <= 6
    moved = {tuple(c) for c in cut_files([n.replace("/a/", "/mnt/b/") for n in names], 64)}
    assert [len(c) for c in sorted(moved)] == [len(c) for c in sorted(before)]


def _grow_and_shrink(tree: Path) -> None:
    """Delete the tree's fifth file and add a copy of its last under a new name and id."""
    discover([tree])[4].unlink()
    replicate_real_tree(tree, 1, first=10_000)


def test_an_ingest_resumed_after_files_were_added_and_deleted_redoes_their_chunks_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("spectraldl.jobs.ingest.CHUNK_FILES", 4)
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 60)
    out = tmp_path / "out.h5"
    with pytest.raises(KeyboardInterrupt):
        ingest([tree], out, backend=_StopAfter(12))
    _grow_and_shrink(tree)
    resumed = _StopAfter(None)
    summary = ingest([tree], out, backend=resumed)
    reference = tmp_path / "reference.h5"
    fresh = ingest([tree], reference)
    assert summary.added == fresh.added > 50 and summary.errors == fresh.errors
    done, again = read_dataset(out), read_dataset(reference)
    assert list(done.ids) == list(again.ids) and np.array_equal(done.X, again.X)
    chunks = sum(1 for _ in cut_files(map(str, discover([tree])), 4))
    assert chunks - 12 < len(resumed.seen) <= chunks - 12 + 4, (len(resumed.seen), chunks)


def test_a_classify_resumed_after_files_were_added_and_deleted_redoes_their_chunks_only(
    model_dir: Path, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 60)
    out = tmp_path / "pred.parquet"
    with pytest.raises(KeyboardInterrupt):
        classify(model_dir, [tree], out, chunk_files=4, backend=_StopAfter(12))
    _grow_and_shrink(tree)
    resumed = _StopAfter(None)
    summary = classify(model_dir, [tree], out, chunk_files=4, backend=resumed)
    fresh = classify(model_dir, [tree], tmp_path / "reference.parquet", chunk_files=4)
    assert summary.rows == fresh.rows > 50 and summary.chunks_resumed >= 12 - 4
    assert summary.chunks_resumed + len(resumed.seen) == summary.chunks
    done, again = read_predictions(out), read_predictions(tmp_path / "reference.parquet")
    assert done.equals(again)


def test_a_complete_table_is_updated_after_files_changed_redoing_their_chunks_only(
    model_dir: Path, tmp_path: Path
) -> None:
    """A file repaired, one replaced, one deleted and one added under the sources of a complete
    table: the same command classifies the changed chunks only, and the table equals a fresh
    run's (before, it said "already complete" and kept the stale rows and bad files)."""
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 60)
    files = discover([tree])
    repaired, replaced = files[7], files[30]
    good = repaired.read_bytes()
    repaired.write_bytes(good[:3000])  # a truncated download
    out = tmp_path / "pred.parquet"
    first = classify(model_dir, [tree], out, chunk_files=4)
    assert repaired.name in _errors(errors_csv_path(out))
    repaired.write_bytes(good)
    replaced.write_bytes(files[31].read_bytes())  # another spectrum now: a duplicate id
    _grow_and_shrink(tree)
    update = _StopAfter(None)
    summary = classify(model_dir, [tree], out, chunk_files=4, backend=update)
    fresh = classify(model_dir, [tree], tmp_path / "reference.parquet", chunk_files=4)
    assert not summary.already_complete and summary.rows == fresh.rows
    assert summary.chunks_resumed + len(update.seen) == summary.chunks
    assert 3 <= len(update.seen) <= 3 + 6 < first.chunks
    assert read_predictions(out).equals(read_predictions(fresh.out))
    assert _errors(errors_csv_path(out)) == _errors(errors_csv_path(fresh.out))
    assert repaired.name not in _errors(errors_csv_path(out))
    assert classify(model_dir, [tree], out, chunk_files=4).already_complete
    again = _StopAfter(None)
    classify(model_dir, [tree], out, chunk_files=4, backend=again, overwrite=True)
    assert len(again.seen) == summary.chunks  # --overwrite classifies everything again


def test_an_update_stopped_between_a_csv_and_its_metadata_is_finished_by_the_next_run(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An update of a CSV table stopped between the table's rename and its metadata's: the old
    metadata still vouches for the sources as they were. With those sources back, the next run
    took the new rows for complete and dropped the update's parts."""
    import spectraldl.core.atomic as atomic

    tree = tmp_path / "tree"
    replicate_real_tree(tree, 30)
    out = tmp_path / "pred.csv"
    classify(model_dir, [tree], out, chunk_files=4)
    added = replicate_real_tree(tree, 1, first=10_000)
    replace = os.replace

    def table_then_stop(src: Any, dst: Any) -> None:
        replace(src, dst)
        if Path(dst) == out:
            raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", table_then_stop)
    with pytest.raises(KeyboardInterrupt):
        classify(model_dir, [tree], out, chunk_files=4)
    monkeypatch.undo()
    for path in added:
        Path(path).unlink()
    summary = classify(model_dir, [tree], out, chunk_files=4)
    fresh = classify(model_dir, [tree], tmp_path / "fresh.csv", chunk_files=4)
    assert not summary.already_complete and summary.rows == fresh.rows
    assert read_predictions(out).equals(read_predictions(fresh.out))


def test_a_resume_with_other_paths_given_is_still_refused(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("spectraldl.jobs.ingest.CHUNK_FILES", 1)
    tree = _tree(tmp_path / "tree", LAMOST[:6])
    with pytest.raises(KeyboardInterrupt):
        classify(model_dir, [tree], tmp_path / "p.parquet", chunk_files=1, backend=_StopAfter(2))
    with pytest.raises(ClassifyError, match="unfinished run of another model, other sources"):
        classify(model_dir, [tree, LAMOST[7]], tmp_path / "p.parquet", chunk_files=1)
    with pytest.raises(ClassifyError, match="other settings"):  # chunks of another size
        classify(model_dir, [tree], tmp_path / "p.parquet", chunk_files=2)
    with pytest.raises(KeyboardInterrupt):
        ingest([tree], tmp_path / "o.h5", backend=_StopAfter(0))
    with pytest.raises(IngestFailed, match="unfinished ingest of other paths"):
        ingest([tree / LAMOST[0].name], tmp_path / "o.h5")


def test_a_classify_stopped_between_its_table_and_errors_file_writes_both_again(
    model_dir: Path, bad_tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table is renamed first, its errors file just after: a run stopped between the two
    left a complete table without its bad files, and the rerun called it done."""
    root, expect, _ = bad_tree
    out = tmp_path / "pred.parquet"
    written = run_module.write_predictions

    def table_then_stop(*args: Any, **kwargs: Any) -> None:
        written(*args, **kwargs)
        if Path(args[0]) == out:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "write_predictions", table_then_stop)
    with pytest.raises(KeyboardInterrupt):
        classify(model_dir, [root], out)
    monkeypatch.undo()
    assert out.exists() and not errors_csv_path(out).exists()
    summary = classify(model_dir, [root], out)
    assert not summary.already_complete and set(_errors(errors_csv_path(out))) == set(expect)
    assert (parts_dir(out) / "merged").exists()
    assert classify(model_dir, [root], out).already_complete


# --- strict and duplicates ----------------------------------------------------------------


def test_strict_fails_when_duplicates_are_the_only_bad_files(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree", LAMOST[:3])
    shutil.copy(LAMOST[0], tree / f"copy-{LAMOST[0].name}")
    with pytest.raises(IngestFailed, match="duplicate id"):
        ingest([tree], tmp_path / "out.h5", strict=True)
    assert not (tmp_path / "out.h5").exists()
    result = _cli("ingest", str(tree), "-o", str(tmp_path / "cli.h5"), "--strict")
    assert result.returncode == 1 and "duplicate id" in result.stderr
    assert "Traceback" not in result.stderr


def test_classify_gives_one_row_per_spectrum_found_twice(model_dir: Path, tmp_path: Path) -> None:
    tree = _tree(tmp_path / "tree", LAMOST[:4])
    shutil.copy(LAMOST[1], tree / f"zz-copy-{LAMOST[1].name}")
    out = tmp_path / "pred.parquet"
    summary = classify(model_dir, [tree], out, chunk_files=2)
    table = read_predictions(out)
    assert len(table) == summary.rows == 4 and table["id"].is_unique
    errors = _errors(errors_csv_path(out))
    assert list(errors) == [f"zz-copy-{LAMOST[1].name}"]
    assert "duplicate id" in errors[f"zz-copy-{LAMOST[1].name}"]
    assert sum(summary.class_counts.values()) == 4


# --- temporary space ----------------------------------------------------------------------


def test_temporary_shards_take_about_the_space_of_the_data(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 700)
    (tree / "broken.fits").write_bytes(b"SIMPLE  =")
    with pytest.raises(IngestFailed):
        ingest([tree], tmp_path / "kept.h5", strict=True)  # leaves its shards
    shards = sum(p.stat().st_size for p in (tmp_path / "kept.h5.parts").glob("chunk-*.npz"))
    ingest([tree], tmp_path / "full.h5")
    data = (tmp_path / "full.h5").stat().st_size
    assert shards <= 2 * data, (shards, data)


# --- one run per output -------------------------------------------------------------------


def test_a_second_run_on_the_same_output_is_refused_at_once(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 1500)
    out = tmp_path / "out.h5"
    first = subprocess.Popen(
        [sys.executable, "-m", "spectraldl.cli", "ingest", str(tree), "-o", str(out), "-j", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not lock_path(out).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        second = CliRunner().invoke(main, ["ingest", str(tree), "-o", str(out)])
        assert time.monotonic() - started < 10
        assert first.poll() is None, "the first run ended before the second started"
        assert second.exit_code == 1
        assert f"pid {first.pid}" in second.output and "another run" in second.output
    finally:
        first.kill()
        first.wait()
    # The first run was killed: its lock went with it, and the same command resumes.
    summary = ingest([tree], out)
    assert summary.added + len(summary.errors) == 1500 and not lock_path(out).exists()


def test_classify_refuses_an_output_another_run_holds(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.parquet"
    with output_lock(out):
        result = CliRunner().invoke(
            main, ["classify", str(model_dir), *map(str, LAMOST[:2]), "-o", str(out)]
        )
    assert result.exit_code == 1 and f"pid {os.getpid()}" in result.output
    assert not out.exists()


# --- workers ------------------------------------------------------------------------------


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parent = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_workers_die_with_a_run_killed_by_kill_9(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 3000)
    out = tmp_path / "out.h5"
    parts = tmp_path / "out.h5.parts"
    run = subprocess.Popen(
        [sys.executable, "-m", "spectraldl.cli", "ingest", str(tree), "-o", str(out), "-j", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not list(parts.glob("chunk-*.npz")) and time.monotonic() < deadline:
        time.sleep(0.01)
    workers = _descendants(run.pid)
    assert len(workers) >= 2, "no worker processes seen"
    run.send_signal(signal.SIGKILL)  # the run only, as the out-of-memory killer would
    run.wait()
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)], "workers outlived the run"
    shards = {p.name for p in parts.glob("chunk-*")}
    time.sleep(1.0)
    assert {p.name for p in parts.glob("chunk-*")} == shards, "something still writes shards"
    summary = ingest([tree], out)
    assert summary.added + len(summary.errors) == 3000


_LOCK_AS_NOBODY = """
import json, sys
from pathlib import Path
from spectraldl.jobs.files import OutputBusy, output_lock
out = Path(sys.argv[1])
with output_lock(out):
    inside = sorted(p.name for p in out.iterdir())
    try:
        with output_lock(out):
            second = "taken"
    except OutputBusy as exc:
        second = str(exc)
after = sorted(p.name for p in out.iterdir())
print(json.dumps({"inside": inside, "second": second, "after": after}))
"""


def test_a_folder_output_in_a_read_only_folder_is_locked_inside_it() -> None:
    """``--out .`` in a folder whose parent cannot be written: the lock goes inside the folder
    (run as an unprivileged user: root writes everywhere)."""
    root = Path(tempfile.mkdtemp())
    try:
        (root / "work").mkdir()
        (root / "work").chmod(0o777)
        root.chmod(0o555)
        done = run_unprivileged(_LOCK_AS_NOBODY, str(root / "work"))
    finally:
        root.chmod(0o755)
        shutil.rmtree(root)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["inside"] == [".lock"] and result["after"] == []
    assert "is being written by another run" in result["second"]


_LOCK_HELD_BY_ANOTHER_USER = """
import sys
from spectraldl.jobs.files import OutputBusy, output_lock
try:
    with output_lock(sys.argv[1]):
        print("taken")
except OutputBusy as exc:
    print(exc)
"""


def test_an_output_another_user_writes_is_refused() -> None:
    """The other user's lock file beside the folder cannot be opened to write: it is locked
    read-only, not passed over for a lock inside the folder (which both would then hold)."""
    root = Path(tempfile.mkdtemp())
    try:
        root.chmod(0o777)
        (root / "work").mkdir()
        (root / "work").chmod(0o777)
        with output_lock(root / "work"):
            (root / "work.lock").chmod(0o644)
            done = run_unprivileged(_LOCK_HELD_BY_ANOTHER_USER, str(root / "work"))
    finally:
        shutil.rmtree(root)
    assert done.returncode == 0, done.stderr
    assert "is being written by another run (pid" in done.stdout


def test_a_pid_namespace_of_its_own_trusts_the_kernel_not_proc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In a PID namespace whose /proc is another's, /proc cannot say: a live process read
    there as gone made every worker quit at once."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    try:
        assert not process_alive(child.pid)
        monkeypatch.setattr("spectraldl.jobs.files.os.readlink", lambda _path: "1")
        assert process_alive(child.pid) and process_alive(os.getpid())
    finally:
        child.wait()


def test_a_dead_run_not_yet_reaped_is_not_alive_for_its_workers() -> None:
    """A run killed under a harness that has not reaped it stays a zombie: its workers
    must still see it gone (they kept running, and kept its pipes open, before)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, left unreaped
    try:
        assert not process_alive(child.pid)
    finally:
        child.wait()
    assert not process_alive(child.pid) and process_alive(os.getpid())


def _killed_by_the_system(task: int) -> int:
    if task == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return task


def test_a_worker_killed_by_the_system_is_a_clear_error() -> None:
    backend = ProcessBackend(2)
    try:
        with pytest.raises(WorkerDied, match=r"out-of-memory.*resume"):
            list(backend.run(_killed_by_the_system, range(4)))
    finally:
        backend.close()


_SIMULATE_SCRIPT = """from spectraldl.simulate import simulate_archive
{guard}simulate_archive("out", archive="lamost", n=30, seed=3, release="dr1", workers=2)
"""


@pytest.mark.parametrize("guarded", [False, True])
def test_a_script_without_the_main_guard_is_told_so(tmp_path: Path, guarded: bool) -> None:
    """Workers re-run a script's top level: without `if __name__ == "__main__":` each one
    starts the work again and dies, and the error says that instead of blaming memory."""
    script = tmp_path / "simulate_it.py"
    guard = 'if __name__ == "__main__":\n    ' if guarded else ""
    script.write_text(_SIMULATE_SCRIPT.format(guard=guard))
    src = Path(simulate_cli.__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if guarded:
        assert result.returncode == 0, result.stderr
        assert len(list((tmp_path / "out").rglob("*.fits*"))) >= 29
        return
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert f"{script} line 2 starts this work outside" in last, result.stderr
    assert '`if __name__ == "__main__":`' in last and "out-of-memory" not in last


def _json_of_fresh_process(script: str, modules: Path) -> Any:
    """What ``script`` prints as JSON, run in a new Python process that sees ``modules``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(modules), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_workers_start_with_the_task_module_imported_once_by_the_forkserver(
    tmp_path: Path,
) -> None:
    """Workers fork from a forkserver that imported the task's module (PyTorch, the stages)
    once, instead of each worker importing it again; in a fresh process, as a run is."""
    (tmp_path / "task_module.py").write_text(
        "import os\nIMPORTED_BY = os.getpid()\n\n\n"
        "def where(_task):\n    return os.getpid(), IMPORTED_BY\n"
    )
    script = (
        "import functools, json\n"
        "from spectraldl.jobs.backends import ProcessBackend\n"
        "from task_module import where\n"
        "if __name__ == '__main__':\n"
        "    backend = ProcessBackend(2)\n"
        "    backend.warm_up(functools.partial(where))\n"
        "    print(json.dumps(list(backend.run(where, range(6)))))\n"
        "    backend.close()\n"
    )
    pairs = _json_of_fresh_process(script, tmp_path)
    workers = {worker for worker, _ in pairs}
    importers = {importer for _, importer in pairs}
    assert len(importers) == 1 and not importers & workers, pairs


def test_a_prestarted_forkserver_imports_the_task_while_this_process_imports_it_too(
    tmp_path: Path,
) -> None:
    """A command starts its workers' server first thing: the server's import of the task's
    code (slow, here 2 s) runs beside the command's own, and the workers fork from it."""
    (tmp_path / "slow_task.py").write_text(
        "import os, time\nSTARTED = time.time()\ntime.sleep(2.0)\nIMPORTED_BY = os.getpid()\n\n\n"
        "def where(_task):\n    return os.getpid(), IMPORTED_BY, STARTED\n"
    )
    script = (
        "import json, os\n"
        "from spectraldl.jobs.backends import ProcessBackend, prestart_local_workers\n"
        "if __name__ == '__main__':\n"
        "    prestart_local_workers('local', 2, ['slow_task'])\n"
        "    import slow_task\n"
        "    backend = ProcessBackend(2)\n"
        "    rows = list(backend.run(slow_task.where, range(4)))\n"
        "    backend.close()\n"
        "    print(json.dumps({'me': os.getpid(), 'started': slow_task.STARTED, 'rows': rows}))\n"
    )
    run = _json_of_fresh_process(script, tmp_path)
    workers = {row[0] for row in run["rows"]}
    servers = {(row[1], row[2]) for row in run["rows"]}
    assert len(servers) == 1, run
    ((server, server_started),) = servers
    assert server not in workers | {run["me"]}
    # The server began importing while this process was still inside its own 2 s import.
    assert server_started < run["started"] + 2.0, run


HEAVY_MODULES = ("numpy", "scipy", "torch", "h5py", "astropy", "importlib.metadata", "rich")
"""Not loaded when a command starts its workers' server (rich: only to draw a bar, later)."""


@pytest.mark.parametrize(
    "args",
    [
        ["simulate", "--archive", "lamost", "-n", "4", "-o", "{out}"],
        ["ingest", "{tree}", "-o", "{out}/x.h5"],
        ["classify", "{tree}", "-o", "{out}/x.parquet"],
    ],
    ids=["simulate", "ingest", "classify"],
)
def test_commands_start_their_workers_server_before_importing_anything_heavy(
    args: list[str], tmp_path: Path
) -> None:
    """The server's import of the stages overlaps the command's own only if the command
    starts it before importing them itself (parsing ``--archive`` once imported the whole
    simulation first, and ``import spectraldl`` NumPy and the package metadata)."""
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 2)
    argv = [a.format(out=tmp_path, tree=tree) for a in args] + ["-j", "2"]
    script = (
        "import json, os, sys\n"
        "import multiprocessing.forkserver as server\n"
        "def started():\n"
        f"    print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))\n"
        "    sys.stdout.flush()\n"
        "    os._exit(0)\n"
        "server.ensure_running = started\n"
        "from spectraldl.cli import main\n"
        f"main({argv!r})\n"
    )
    assert _json_of_fresh_process(script, tmp_path) == []


def test_a_progress_bar_is_drawn_on_a_terminal_and_nothing_otherwise() -> None:
    """Without a terminal the bar writes nothing and never loads rich (in a fresh process);
    asked for, it draws the count on stderr."""
    script = (
        "import sys\n"
        "from spectraldl.cli._progress import progress_bar\n"
        "with progress_bar('files', enabled={enabled}) as update:\n"
        "    update(3, 4)\n"
        "print('rich' in sys.modules)\n"
    )
    for enabled in (False, True):
        done = subprocess.run(
            [sys.executable, "-c", script.format(enabled=enabled)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"{enabled}\n"
        if enabled:
            assert "3/4" in done.stderr
        else:
            assert done.stderr == ""


def test_commands_prestart_the_modules_their_workers_run() -> None:
    assert task_modules(classify_chunk) == list(classify_cli.WORKER_MODULES)
    assert task_modules(partial(read_chunk, settings=None)) == list(ingest_cli.WORKER_MODULES)
    assert task_modules(partial(simulate_chunk, out_dir="x")) == list(simulate_cli.WORKER_MODULES)


# --- full and read-only disks -------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 320 KiB file system (tmpfs), unmounted afterwards; needs root, as CI has."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _remount(mount: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount)], check=True)


@pytest.mark.slow
def test_ingest_on_a_full_disk_says_so_and_resumes_when_there_is_room(
    small_disk: Path, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 1200)
    reference = tmp_path / "reference.h5"
    ingest([tree], reference)
    out = small_disk / "out.h5"
    full = _cli("ingest", str(tree), "-o", str(out), "-j", "1")
    assert full.returncode == 1, full.stderr
    assert "no space left" in full.stderr and "Traceback" not in full.stderr
    assert len(full.stderr.strip().splitlines()) == 1, full.stderr
    assert not out.exists()
    _remount(small_disk, "size=64m")
    again = _cli("ingest", str(tree), "-o", str(out), "-j", "1")
    assert again.returncode == 0, again.stderr
    got, want = read_dataset(out), read_dataset(reference)
    assert list(got.ids) == list(want.ids) and np.array_equal(got.X, want.X)


@pytest.mark.slow
def test_classify_on_a_full_disk_says_so_and_resumes(
    model_dir: Path, small_disk: Path, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 2500)
    out = small_disk / "pred.csv"
    args = (
        "classify",
        str(model_dir),
        str(tree),
        "-o",
        str(out),
        "-j",
        "1",
        "--chunk-files",
        "100",
    )
    full = _cli(*args)
    assert full.returncode == 1, full.stderr
    assert "no space left" in full.stderr and "Traceback" not in full.stderr
    _remount(small_disk, "size=64m")
    again = _cli(*args)
    assert again.returncode == 0, again.stderr
    assert "chunks were already done" in again.stdout
    bad = len(_errors(errors_csv_path(out)))
    assert len(read_predictions(out)) + bad == 2500 and bad < 50


@pytest.mark.slow
@pytest.mark.parametrize("command", ["ingest", "classify"])
def test_a_read_only_output_folder_is_one_clear_line(
    command: str, model_dir: Path, small_disk: Path
) -> None:
    _remount(small_disk, "ro")
    out = small_disk / ("out.h5" if command == "ingest" else "pred.parquet")
    model = [str(model_dir)] if command == "classify" else []
    result = _cli(command, *model, *map(str, LAMOST[:3]), "-o", str(out))
    assert result.returncode == 1
    assert "Read-only file system" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# --- Ctrl-C and SIGTERM ---------------------------------------------------------------------


def _classify_run(model_dir: Path, tree: Path, out: Path, scheduler: str) -> subprocess.Popen:
    """classify in its own session, 2 workers of ``scheduler``, chunks of 50 files."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spectraldl.cli",
            "classify",
            str(model_dir),
            str(tree),
            "-o",
            str(out),
            "-j",
            "2",
            "--chunk-files",
            "50",
            "--scheduler",
            scheduler,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # As in a terminal: a suite started in the background (`make test &`) ignores SIGINT,
        # and its children would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _first_chunk(out: Path) -> None:
    """Wait (at most 2 minutes) until a run of ``out`` committed its first chunk."""
    deadline = time.monotonic() + 120
    while not list(parts_dir(out).glob("chunk-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["local", "dask-local"])
def test_ctrl_c_is_one_clean_message(model_dir: Path, tmp_path: Path, scheduler: str) -> None:
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 3000)
    out = tmp_path / "pred.parquet"
    run = _classify_run(model_dir, tree, out, scheduler)
    _first_chunk(out)
    os.killpg(run.pid, signal.SIGINT)  # what a terminal does: the whole process group
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 1, stderr
    assert "interrupted" in stderr and "resume" in stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_sigterm_to_the_process_group_stops_a_dask_local_cluster_cleanly(
    model_dir: Path, tmp_path: Path
) -> None:
    """timeout and SLURM send SIGTERM to the whole group: the cluster's worker processes get
    it too, and the run still ends with one line, status 143 and no process left."""
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 3000)
    out = tmp_path / "pred.parquet"
    run = _classify_run(model_dir, tree, out, "dask-local")
    _first_chunk(out)
    os.killpg(run.pid, signal.SIGTERM)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 143, stderr
    assert stderr.splitlines() == [
        "Error: terminated (SIGTERM); the finished chunks are kept: run the same command to resume"
    ]
    assert not left_in_group(run.pid), "processes outlived the run"


class _OutsideHandler(Exception):
    """Raised by the SIGTERM handler a test sets before running a command in this process."""


def _outside_handler(_signum: int, _frame: Any) -> None:
    raise _OutsideHandler


def _signalled(*_args: Any, **_kwargs: Any) -> None:
    """A command's work, replaced: this process gets SIGTERM (handled before this returns)."""
    signal.raise_signal(signal.SIGTERM)


def _ctrl_c(*_args: Any, **_kwargs: Any) -> None:
    raise KeyboardInterrupt


LONG_COMMANDS = {
    "ingest": (["ingest", "a.fits", "-o", "out.h5", "-j", "1"], "spectraldl.jobs.ingest.ingest"),
    "classify": (
        ["classify", "a.fits", "-o", "out.parquet", "-j", "1"],
        "spectraldl.classify.run.classify",
    ),
    "simulate": (
        ["simulate", "--archive", "lamost", "-n", "1", "-o", "sim", "-j", "1"],
        "spectraldl.simulate.simulate_archive",
    ),
    "train": (["train", "a.h5", "-o", "model"], "spectraldl.ml.training.train"),
    "learn": (
        ["learn", "--db", "web.db", "--model", "pretrained", "-o", "model"],
        "spectraldl.web.learning.learn",
    ),
    "demo": (["demo", "--out", "run"], "spectraldl.demo.run_demo"),
    "explore": (["explore", "a.h5", "-o", "maps"], "spectraldl.analysis.explore.explore"),
    "candidates": (
        ["candidates", "pred.csv", "-o", "cand.csv"],
        "spectraldl.catalogue.candidates.find_candidates",
    ),
    "import": (["import", "a.fits", "--db", "web.db"], "spectraldl.web.importing.import_paths"),
    "ssap-import": (
        ["ssap-import", "http://localhost:9/ssap", "--db", "web.db"],
        "spectraldl.web.importing.import_ssap",
    ),
    "evaluate": (["evaluate", "pretrained", "a.h5"], "spectraldl.ml.modelcard.load_model"),
    "calibrate-blur": (
        ["calibrate-blur", "--pairs", "pairs.csv", "folder"],
        "spectraldl.analysis.calibrate.calibrate_blur",
    ),
    "report": (["report", "folder"], "spectraldl.analysis.report.write_report"),
}
"""Each long command's arguments and the library function that does its work."""

RESUMES = {
    "ingest": "the finished chunks are kept: run the same command to resume",
    "classify": "the finished chunks are kept: run the same command to resume",
    "demo": "the finished steps are kept: run the same command to resume",
    "simulate": "truth.csv does not list this run's files yet: run the same command to finish",
    "import": "the spectra imported so far are kept: run the same command to finish",
    "ssap-import": "the downloads and the spectra imported so far are kept: run the same "
    "command to finish",
}
"""What each command that goes on where it stopped says; the others start again."""


@pytest.mark.parametrize("command", sorted(LONG_COMMANDS))
def test_sigterm_ends_a_long_command_as_ctrl_c_does(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM ends the command with one line (status 143), Ctrl-C with the same words
    (status 1); the handler set before the command is back after it."""
    args, work = LONG_COMMANDS[command]
    monkeypatch.chdir(tmp_path)
    for name in ("pred.csv", "pairs.csv", "a.h5"):
        Path(name).write_text("id\n")
    Path("folder").mkdir()
    resume = RESUMES.get(command, "run the same command to start again")
    previous = signal.signal(signal.SIGTERM, _outside_handler)
    try:
        monkeypatch.setattr(work, _signalled)
        terminated = CliRunner().invoke(main, args)
        assert signal.getsignal(signal.SIGTERM) is _outside_handler
        monkeypatch.setattr(work, _ctrl_c)
        interrupted = CliRunner().invoke(main, args)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert terminated.exit_code == 143, terminated.output
    assert terminated.stderr == f"Error: terminated (SIGTERM); {resume}\n"
    assert interrupted.exit_code == 1, interrupted.output
    assert interrupted.stderr == f"Error: interrupted; {resume}\n"


# --- one option name ----------------------------------------------------------------------


def test_every_command_names_its_workers_the_same_way() -> None:
    from spectraldl.jobs.processes import usable_cores

    with_workers = []
    context = click.Context(main)
    for name in main.list_commands(context):
        command = main.get_command(context, name)
        names = {p.name: p for p in command.params}
        assert "jobs" not in names, name
        if "workers" in names:
            option = names["workers"]
            assert sorted(option.opts) == ["--workers", "-j"], name
            with_workers.append(name)
            assert option.default == usable_cores(), name
    assert {"ingest", "classify", "candidates", "explore", "simulate", "demo"} <= set(with_workers)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_the_prestarted_worker_server_ignores_ctrl_c_while_it_imports() -> None:
    """Ctrl-C in a command's first seconds reached the worker server while it imported the
    stages, and it printed a KeyboardInterrupt traceback: it now starts ignoring Ctrl-C."""
    script = (
        "import multiprocessing.forkserver as f\n"
        "from spectraldl.jobs.backends import prestart_local_workers\n"
        "prestart_local_workers('local', 2, ['json'])\n"
        "status = open(f'/proc/{f._forkserver._forkserver_pid}/status').read()\n"
        "line = next(l for l in status.splitlines() if l.startswith('SigIgn'))\n"
        "print(bool(int(line.split()[1], 16) >> (2 - 1) & 1))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


# --- a Dask cluster joined over TCP ---------------------------------------------------------


def _dask(command: str) -> list[str]:
    """``dask COMMAND`` (scheduler, worker) with this Python."""
    return [sys.executable, "-m", f"distributed.cli.dask_{command}"]


@contextlib.contextmanager
def _dask_cluster(
    folder: Path,
    *,
    workers: int = 1,
    worker_env: dict[str, str] | None = None,
    worker_prefix: Sequence[str] = (),
) -> Iterator[tuple[str, subprocess.Popen]]:
    """A real ``dask scheduler`` and ``dask worker`` processes on loopback, as a user starts
    them: (the scheduler's address, its process). ``worker_env`` is added to the workers',
    ``worker_prefix`` comes before their command."""
    folder.mkdir(parents=True, exist_ok=True)
    info = folder / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    where = ["--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0"]
    scheduler = subprocess.Popen(
        [*_dask("scheduler"), *where, "--scheduler-file", str(info)], **quiet
    )
    with _killed_at_exit([scheduler]) as started:
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        address = json.loads(info.read_text())["address"]
        for _ in range(workers):
            started.append(_dask_worker(address, folder, worker_env, worker_prefix))
        yield address, scheduler


@contextlib.contextmanager
def _killed_at_exit(processes: list[subprocess.Popen]) -> Iterator[list[subprocess.Popen]]:
    """``processes``, a list that may grow, each killed and waited for on exit."""
    try:
        yield processes
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=30)


def _dask_worker(
    address: str,
    folder: Path,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
) -> subprocess.Popen:
    """A ``dask worker`` process (one thread, no nanny) of the scheduler at ``address``: ``env``
    is added to its environment, ``prefix`` comes before its command."""
    args = [*_dask("worker"), address, "--nthreads", "1", "--no-nanny", "--no-dashboard"]
    return subprocess.Popen(
        [*prefix, *args],
        env={**os.environ, **(env or {})},
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for_workers(address: str, n: int) -> None:
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(n, timeout=60)


def test_a_dask_scheduler_killed_mid_run_ends_with_one_line_and_resumes(
    model_dir: Path, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 1500)
    reference = tmp_path / "local.parquet"
    classify(model_dir, [tree], reference, chunk_files=50)
    out = tmp_path / "pred.parquet"
    with _dask_cluster(tmp_path / "cluster") as (address, scheduler):
        _wait_for_workers(address, 1)
        run = _classify_run(model_dir, tree, out, address)
        _first_chunk(out)
        scheduler.kill()
        _, stderr = run.communicate(timeout=120)
    assert run.returncode == 1, stderr
    assert stderr.splitlines() == [
        f"Error: lost the Dask scheduler at {address}; the finished chunks are kept: start the "
        "cluster again and run the same command to resume"
    ]
    done = len(list(parts_dir(out).glob("chunk-*.parquet")))
    assert 0 < done < len(list(cut_files(map(str, discover([tree])), 50)))
    classify(model_dir, [tree], out, chunk_files=50)
    assert read_predictions(out).equals(read_predictions(reference))


def test_a_dask_scheduler_without_workers_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    # The run used to wait for ever, its progress bar at 0.
    monkeypatch.setattr(backends_module, "WORKER_WAIT_S", 2.0)
    tree = _tree(tmp_path / "tree", LAMOST[:8])
    with _dask_cluster(tmp_path / "cluster", workers=0) as (address, _):
        args = ["ingest", str(tree), "-o", str(tmp_path / "o.h5"), "--scheduler", address]
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert result.output.endswith(
        f"Error: the Dask scheduler at {address} has no workers (waited 2 s): start them "
        f"with `dask worker {address}`\n"
    )
    assert not (tmp_path / "o.h5").exists()


def _most_at_once(intervals: Iterable[tuple[float, float]]) -> int:
    """The most of the (start, end) intervals that overlap at one moment."""
    events = sorted((t, step) for start, end in intervals for t, step in ((start, 1), (end, -1)))
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def test_dask_workers_that_join_during_a_run_get_work(tmp_path: Path) -> None:
    # The tasks kept submitted were counted once, from the workers present at the start: an
    # adaptive cluster that starts with one worker ran two tasks at a time however many joined.
    from distributed import Client

    task = ["sh", "-c", "date +%s.%N; sleep 0.4; date +%s.%N"]  # its start and end times
    with (
        _dask_cluster(tmp_path / "cluster") as (address, _),
        Client(address, timeout="30s") as client,
    ):
        client.wait_for_workers(1, timeout=60)
        backend = backends_module.DaskBackend(client)
        assert backend.in_flight == 2
        with _killed_at_exit([_dask_worker(address, tmp_path) for _ in range(2)]):
            client.wait_for_workers(3, timeout=60)
            times = [out.split() for out in backend.run(subprocess.check_output, [task] * 24)]
    assert len(times) == 24 and backend.in_flight == 6
    assert _most_at_once((float(a), float(b)) for a, b in times) == 3


def test_a_dask_scheduler_address_where_nothing_listens_is_refused_at_once(
    tmp_path: Path,
) -> None:
    # Dask retried the connection for 20 s, then said it timed out.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"  # free once closed
    tree = _tree(tmp_path / "tree", LAMOST[:2])
    args = ["ingest", str(tree), "-o", str(tmp_path / "o.h5"), "--scheduler", address]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"Error: cannot reach the Dask scheduler at {address}: Connection refused; is it "
        "running there? (`dask scheduler` prints the address to give)\n"
    )
    assert not (tmp_path / "o.h5").exists()


@pytest.mark.parametrize("port", ["99999", "abc", ""], ids=["out-of-range", "text", "missing"])
def test_a_dask_scheduler_address_without_a_port_is_a_usage_error(
    tmp_path: Path, port: str
) -> None:
    # A traceback: the probe's ValueError (out of range: before the probe, after 20 s, one
    # line), Dask's for the others.
    address = "tcp://127.0.0.1" + (f":{port}" if port else "")
    tree = _tree(tmp_path / "tree", LAMOST[:2])
    args = ["ingest", str(tree), "-o", str(tmp_path / "o.h5"), "--scheduler", address]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.endswith(
        f"Error: Invalid value for '--scheduler': '{address}' names no port 1-65535: give "
        "tcp://HOST:PORT\n"
    ), result.output
    assert not (tmp_path / "o.h5").exists()
    with pytest.raises(ValueError, match="names no port"), backends_module.open_backend(address):
        pass


def _worker_without_spectraldl(folder: Path) -> dict[str, str]:
    """A worker environment whose Python finds no spectraldl (its sys.path entries removed)."""
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(
        "import os, sys\n"
        "sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p, 'spectraldl'))]\n"
    )
    return {"PYTHONPATH": str(folder)}


def _worker_with_other_code(folder: Path) -> dict[str, str]:
    """A worker environment with another spectraldl of the same version (one file changed)."""
    package = Path(backends_module.__file__).parents[1]
    ignore = shutil.ignore_patterns("data", "__pycache__")
    shutil.copytree(package, folder / "spectraldl", ignore=ignore)
    with (folder / "spectraldl" / "jobs" / "backends.py").open("a") as handle:
        handle.write("\n# a later commit\n")
    return {"PYTHONPATH": str(folder)}


@pytest.mark.parametrize(
    ("worker", "problem"),
    [
        (_worker_without_spectraldl, "cannot run spectraldl (ModuleNotFoundError"),
        (_worker_with_other_code, "runs other code (spectraldl code "),
    ],
    ids=["no-spectraldl", "other-code"],
)
def test_a_dask_worker_that_cannot_run_this_spectraldl_is_named(
    tmp_path: Path, worker: Callable[[Path], dict[str, str]], problem: str
) -> None:
    # A worker without spectraldl died on its first task and the run waited for ever; one with
    # another checkout read the files with other code. 600 files: more than one chunk, which
    # ingest would run in this process.
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 600)
    env = worker(tmp_path / "env")
    with _dask_cluster(tmp_path / "cluster", worker_env=env) as (address, _):
        _wait_for_workers(address, 1)
        args = ["ingest", str(tree), "-o", str(tmp_path / "o.h5"), "--scheduler", address]
        result = subprocess.run(
            [sys.executable, "-m", "spectraldl.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    line = f"Error: the Dask worker {address.rsplit(':', 1)[0]}:"
    assert result.stderr.startswith(line) and problem in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not (tmp_path / "o.h5").exists()


def _replace_workers(
    client: Any, folder: Path, workers: list[subprocess.Popen], env: dict[str, str] | None = None
) -> str:
    """Kill ``workers``, the cluster's only ones, and start one with ``env`` (added to
    ``workers``): its address, once the scheduler has that worker only."""
    before = set(client.ncores())
    for process in workers:
        process.kill()
        process.wait(timeout=30)
    workers.append(_dask_worker(client.scheduler.address, folder, env))
    deadline = time.monotonic() + 120
    while len(now := set(client.ncores())) != 1 or now & before:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the cluster has workers {now}, not one new one")
        time.sleep(0.1)
    return now.pop()


@pytest.mark.parametrize(
    ("worker", "problem"),
    [
        (_worker_without_spectraldl, "cannot run spectraldl (ModuleNotFoundError"),
        (_worker_with_other_code, "runs other code (spectraldl code "),
    ],
    ids=["no-spectraldl", "other-code"],
)
def test_a_dask_worker_that_joins_after_the_start_is_checked_before_its_first_task(
    tmp_path: Path, monkeypatch, worker: Callable[[Path], dict[str, str]], problem: str
) -> None:
    # Workers were checked when the command joined only: a later one (an adaptive cluster adds
    # them for minutes) read the files with other code, or without spectraldl died on its first
    # task, which Dask gave to the next worker (here none: a scheduler allowing no such death
    # fails the task at once instead of waiting for ever).
    from distributed import Client

    monkeypatch.setenv("DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES", "0")
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 600)  # more than one chunk: ingest runs one in this process
    out, folder = tmp_path / "o.h5", tmp_path / "cluster"
    late: list[str] = []
    env = worker(tmp_path / "env")
    join_check = backends_module._check_workers

    def checked_then_replaced(client: Any, scheduler: str) -> None:
        join_check(client, scheduler)  # the good worker passes
        if not late:
            late.append(_replace_workers(client, folder, workers, env))

    monkeypatch.setattr(backends_module, "_check_workers", checked_then_replaced)
    args = ["ingest", str(tree), "-o", str(out), "--scheduler"]
    with _dask_cluster(folder, workers=0) as (address, _), _killed_at_exit([]) as workers:
        workers.append(_dask_worker(address, folder))
        failed = CliRunner().invoke(main, [*args, address])
        left = [out.exists(), *(tmp_path / "o.h5.parts").glob("chunk-*")]
        with Client(address, timeout="30s") as client:
            _replace_workers(client, folder, workers)
        done = CliRunner().invoke(main, [*args, address])
    assert failed.exit_code == 1, failed.output
    assert failed.output.startswith(f"Error: the Dask worker {late[0]} {problem}"), failed.output
    assert failed.output.endswith(
        "; the finished chunks are kept: run the same command to resume\n"
    ), failed.output
    assert len(failed.output.splitlines()) == 1, failed.output
    assert left == [False]  # no output, no chunk committed
    assert done.exit_code == 0, done.output
    assert len(read_dataset(out)) > 500


def _unseen(model: Path) -> str:
    """What classify says of a model folder a Dask worker cannot see."""
    return (
        f"Error: {model}: a worker could not see this model folder, though this machine sees "
        "it now: workers must see the model at the same absolute path (a shared file system); "
        "the finished chunks are kept: run the same command once they do\n"
    )


def _blind(*folders: Path) -> list[str]:
    """A command prefix: the command runs where each of ``folders`` is an empty file system of
    its own (a node whose mount of the shared file system is missing)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a mount namespace")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here: {probe.stderr.decode().strip()}")
    mounts = " && ".join(f"mount -t tmpfs none {shlex.quote(str(f))}" for f in folders)
    return ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$@"', "blind"]


def test_a_dask_worker_that_cannot_see_the_files_is_a_clear_error(tmp_path: Path) -> None:
    # It listed every file as bad ("No such file"): a table of 0 rows that a second run, on
    # a cluster that sees the files, called complete.
    tree = tmp_path / "tree"
    replicate_real_tree(tree, 600)  # more than one chunk: ingest runs one in this process
    out = tmp_path / "o.h5"
    with _dask_cluster(tmp_path / "cluster", worker_prefix=_blind(tree)) as (address, _):
        _wait_for_workers(address, 1)
        done = _cli("ingest", str(tree), "-o", str(out), "--scheduler", address)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"Error: {tree}/"), done.stderr
    assert done.stderr.endswith(
        ": a worker found no such file, though this machine sees it now: workers must see the "
        "inputs at the same absolute paths (a shared file system); the finished chunks are "
        "kept: run the same command once they do (or at once, if the file was only now "
        "created)\n"
    )
    assert not out.exists() and not list((tmp_path / "o.h5.parts").glob("chunk-*"))
    assert ingest([tree], out).added > 500  # the same command, where the files are seen


def test_a_dask_worker_that_cannot_see_the_model_folder_is_a_clear_error(
    model_dir: Path, tmp_path: Path
) -> None:
    # It was a model error ("no such model directory, and no shipped model of that name"), as
    # if the model were broken.
    model = shutil.copytree(model_dir, tmp_path / "shared" / "model")
    tree = _tree(tmp_path / "tree", LAMOST[:8])
    out = tmp_path / "pred.parquet"
    blind = _blind(tmp_path / "shared")
    with _dask_cluster(tmp_path / "cluster", worker_prefix=blind) as (address, _):
        _wait_for_workers(address, 1)
        done = _cli("classify", str(model), str(tree), "-o", str(out), "--scheduler", address)
    assert done.returncode == 1, done.stderr
    assert done.stderr == _unseen(model)
    assert not out.exists()
    assert classify(model, [tree], out).rows == 8  # the same command, where the model is seen


def _worker_installed_elsewhere(folder: Path) -> dict[str, str]:
    """A worker environment whose spectraldl, this one's code and shipped models, is installed
    in ``folder`` (another virtual environment or container than this machine's)."""
    package = Path(backends_module.__file__).parents[1]
    shutil.copytree(package, folder / "spectraldl", ignore=shutil.ignore_patterns("__pycache__"))
    return {"PYTHONPATH": str(folder)}


def _workers_spectraldl(address: str) -> list[str]:
    """Where each worker of the scheduler at ``address`` imports spectraldl from."""
    from distributed import Client

    def where() -> str:
        import spectraldl

        return str(spectraldl.__file__)

    with Client(address, timeout="30s") as client:
        return sorted(client.run(where).values())


def test_a_dask_worker_installed_elsewhere_classifies_with_a_shipped_model(
    tmp_path: Path,
) -> None:
    # The task carried this machine's path of the shipped model: a worker whose spectraldl is
    # installed at another path (the same code) said the model must be on a shared file system.
    elsewhere = tmp_path / "elsewhere"
    env = _worker_installed_elsewhere(elsewhere)
    model = shutil.copytree(resolve_model("cnn-small"), tmp_path / "shared" / "model")
    tree = _tree(tmp_path / "tree", LAMOST[:8])
    local = classify("cnn-small", [tree], tmp_path / "local.parquet")
    here = Path(backends_module.__file__).parents[1]  # the worker sees neither this spectraldl
    blind = _blind(here, tmp_path / "shared")  # nor a model folder given by its path
    named, by_path = tmp_path / "named.parquet", tmp_path / "by-path.parquet"
    with _dask_cluster(tmp_path / "cluster", worker_env=env, worker_prefix=blind) as (address, _):
        _wait_for_workers(address, 1)
        workers = _workers_spectraldl(address)
        args = [str(tree), "-o", str(named), "--scheduler", address]
        shipped = _cli("classify", "--model", "cnn-small", *args)
        unseen = _cli("classify", str(model), str(tree), "-o", str(by_path), "--scheduler", address)
    assert workers == [str(elsewhere / "spectraldl" / "__init__.py")]
    assert shipped.returncode == 0, shipped.stderr
    assert read_predictions(named).equals(read_predictions(local.out))
    assert unseen.returncode == 1, unseen.stderr
    assert unseen.stderr == _unseen(model)
    assert not by_path.exists()


def _change_card(card: Path) -> None:
    data = json.loads(card.read_text(encoding="utf-8"))
    data["created"] = "2027-01-01T00:00:00+00:00"  # another model id
    card.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize("change", ["changed", "missing"])
def test_a_dask_worker_whose_shipped_model_is_not_this_machines_is_named(
    tmp_path: Path, change: str
) -> None:
    # The worker loaded the shipped model from this machine's path, so a worker with other
    # shipped models never showed; now it loads its own, and its id is compared.
    elsewhere = tmp_path / "elsewhere"
    env = _worker_installed_elsewhere(elsewhere)
    theirs = elsewhere / "spectraldl" / "data" / "models" / "cnn-small"
    if change == "changed":
        _change_card(theirs / "card.json")
        found = load_model(theirs, device="cpu").model_id
    else:
        shutil.rmtree(theirs)
        found = ""
    ours = load_model(resolve_model("cnn-small"), device="cpu").model_id
    tree = _tree(tmp_path / "tree", LAMOST[:8])
    out = tmp_path / "pred.parquet"
    with _dask_cluster(tmp_path / "cluster", worker_env=env) as (address, _):
        _wait_for_workers(address, 1)
        done = _cli(
            "classify", "-m", "cnn-small", str(tree), "-o", str(out), "--scheduler", address
        )
    problem = (
        f"the shipped model cnn-small where a task ran is not this machine's (id {found} there, "
        f"{ours} here)"
        if change == "changed"
        else "the spectraldl where a task ran has no shipped model cnn-small"
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        f"Error: {theirs}: {problem}: install the same spectraldl, with its shipped models, on "
        "every worker; the finished chunks are kept: run the same command once they have it\n"
    )
    assert not out.exists()


def test_a_run_started_with_a_shipped_name_resumes_with_the_model_at_a_path(
    tmp_path: Path,
) -> None:
    # The manifest records the model's id, not how it was named: the name, the package's folder
    # or a copy on a shared file system are one model, and each resumes the others' runs.
    tree = _tree(tmp_path / "tree", LAMOST[:6])
    out = tmp_path / "p.parquet"
    copy = shutil.copytree(resolve_model("cnn-small"), tmp_path / "shared" / "cnn-small")
    with pytest.raises(KeyboardInterrupt):
        classify("cnn-small", [tree], out, chunk_files=1, backend=_StopAfter(2))
    resumed = classify(copy, [tree], out, chunk_files=1)
    assert resumed.chunks_resumed == 2 and resumed.rows == 6
    assert classify(resolve_model("cnn-small"), [tree], out, chunk_files=1).already_complete
    fresh = classify(copy, [tree], tmp_path / "fresh.parquet", chunk_files=1)
    assert read_predictions(out).equals(read_predictions(fresh.out))
