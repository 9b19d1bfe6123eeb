"""The resumable-job engine (`spectraldl.jobs.engine`) on its own: commit, resume, kill -9.

Ingest and classify run on it (their own kill -9 tests are in test_ingest.py
and test_inference.py); here a toy job shows the protocol once, on every
local backend.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spectraldl.jobs import engine
from spectraldl.jobs.backends import SerialBackend, open_backend
from spectraldl.jobs.engine import PartsFolder, Shard, run_shards

JOB = """
import sys, time
from pathlib import Path
from spectraldl.jobs.backends import SerialBackend, open_backend
from spectraldl.jobs.engine import PartsFolder, Shard, run_shards
from test_engine import commit, square

if __name__ == "__main__":
    out, n, workers = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    parts = PartsFolder(out)
    parts.prepare({"n": n}, merged=lambda _: False, conflict=RuntimeError("other run"))
    shards = [Shard(f"part-{i:03d}.json", 1, (i, 0.05)) for i in range(n)]
    with open_backend("local", workers=workers) as backend:
        done = run_shards(shards, square, commit, parts=parts, backend=backend)
    print("resumed", done.resumed, flush=True)
"""


def square(task: tuple[int, float]) -> dict[str, int]:
    """A repeatable task: sleep a moment, answer."""
    number, pause_s = task
    time.sleep(pause_s)
    return {"n": number, "square": number * number}


def commit(path: Path, result: dict[str, int]) -> None:
    """Write a part slowly enough for a kill to land in the middle of a write."""
    text = json.dumps(result)
    with path.open("w") as handle:
        for char in text:
            handle.write(char)
            handle.flush()


def _parts(folder: Path) -> dict[str, dict[str, int]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("part-*.json"))}


@pytest.mark.parametrize("workers", [1, 2])
def test_parts_are_committed_in_shard_order_whatever_the_backend(tmp_path, workers) -> None:
    parts = PartsFolder(tmp_path / "out.h5")
    parts.prepare({"n": 6}, merged=lambda _: False, conflict=RuntimeError("other run"))
    shards = [Shard(f"part-{i:03d}.json", 1, (i, 0.0)) for i in range(6)]
    with open_backend("local", workers=workers) as backend:
        done = run_shards(shards, square, commit, parts=parts, backend=backend)
    assert [p.name for p in done.paths] == [s.name for s in shards]
    assert [json.loads(p.read_text())["square"] for p in done.paths] == [0, 1, 4, 9, 16, 25]
    assert done.resumed == 0
    again = run_shards(shards, square, commit, parts=parts, backend=SerialBackend())
    assert again.resumed == 6


def test_results_are_handed_on_in_shard_order_and_a_slow_shard_does_not_pile_them_up(
    tmp_path,
) -> None:
    # The first shard is slow, so the other worker finishes all the rest before it: every
    # shard still reaches in_order in shard order, as soon as those before it are done, and
    # no more than HELD_RESULTS of the early finishers are held (the rest come as None, for
    # the job to read back from their parts).
    parts = PartsFolder(tmp_path / "out.h5")
    parts.prepare({"n": 16}, merged=lambda _: False, conflict=RuntimeError("other run"))
    n = engine.HELD_RESULTS + 8
    shards = [Shard(f"part-{i:03d}.json", 1, (i, 1.5 if i == 0 else 0.0)) for i in range(n)]
    handed: list[tuple[str, dict[str, int] | None, int]] = []

    def in_order(part: Path, result: dict[str, int] | None) -> None:
        handed.append((part.name, result, len(list(parts.path.glob("part-*.json")))))

    with open_backend("local", workers=2) as backend:
        run_shards(shards, square, commit, parts=parts, backend=backend, in_order=in_order)
    assert [name for name, _, _ in handed] == [s.name for s in shards]
    held = [result for _, result, _ in handed if result is not None]
    assert all(result == json.loads((parts.path / name).read_text())
               for name, result, _ in handed if result is not None)  # fmt: skip
    assert handed[0][1] is not None  # the shard everyone waited for is not read back
    assert len(held) <= engine.HELD_RESULTS + 1
    assert any(result is None for _, result, _ in handed)
    # Resumed: every part is read back, none is run again, and the order holds.
    (parts.path / "part-003.json").unlink()
    handed.clear()
    done = run_shards(shards, square, commit, parts=parts, backend=SerialBackend(),
                      in_order=in_order)  # fmt: skip
    assert done.resumed == n - 1
    assert [(name, result is None) for name, result, _ in handed] == [
        (s.name, s.name != "part-003.json") for s in shards
    ]
    assert handed[3][2] == n  # handed on once committed


def test_parts_of_another_run_are_refused_or_replaced(tmp_path) -> None:
    parts = PartsFolder(tmp_path / "out.h5")
    parts.prepare({"n": 1}, merged=lambda _: False, conflict=RuntimeError("other run"))
    (parts.path / "part-000.json").write_text("{}")
    with pytest.raises(RuntimeError, match="other run"):
        parts.prepare({"n": 2}, merged=lambda _: False, conflict=RuntimeError("other run"))
    parts.prepare({"n": 2}, merged=lambda _: False, conflict=None)
    assert not (parts.path / "part-000.json").exists()
    parts.mark_merged("run-1")
    parts.prepare({"n": 2}, merged=lambda marker: marker == "run-1", conflict=None)
    assert sorted(p.name for p in parts.path.iterdir()) == ["manifest.json"]


def test_a_run_killed_while_starting_does_not_block_the_next(tmp_path, monkeypatch) -> None:
    # Killed after making the parts folder but before its manifest, a run used to leave a
    # folder that the same command then refused as "another run's parts".
    parts = PartsFolder(tmp_path / "out.h5")

    class Killed(BaseException):
        pass

    def killed(*args: object, **kwargs: object) -> str:
        raise Killed

    monkeypatch.setattr(engine.json, "dumps", killed)
    with pytest.raises(Killed):
        parts.prepare({"n": 1}, merged=lambda _: False, conflict=RuntimeError("other run"))
    monkeypatch.undo()
    assert not parts.path.exists()
    parts.prepare({"n": 1}, merged=lambda _: False, conflict=RuntimeError("other run"))
    assert sorted(p.name for p in parts.path.iterdir()) == ["manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5.parts"]
    # A removal killed half-way leaves the renamed folder, which the next run clears; the
    # parts folder itself is never left half removed.
    (parts.path / "part-000.json").write_text("{}")
    rmtree = engine.shutil.rmtree

    def killed_while_removing(path: Path, **kwargs: object) -> None:
        if Path(path).exists():
            raise Killed
        rmtree(path, **kwargs)

    monkeypatch.setattr(engine.shutil, "rmtree", killed_while_removing)
    with pytest.raises(Killed):
        parts.prepare({"n": 2}, merged=lambda _: False, conflict=None)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5.parts.old"]
    parts.prepare({"n": 2}, merged=lambda _: False, conflict=RuntimeError("other run"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5.parts"]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_kill_9_leaves_only_whole_parts_and_the_rerun_finishes(tmp_path, workers) -> None:
    out = tmp_path / "out.h5"
    script = tmp_path / "job.py"
    script.write_text(JOB)
    command = [sys.executable, str(script), str(out), "40", str(workers)]
    env = {"PYTHONPATH": str(Path(__file__).parent), "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(command, env=env, start_new_session=True)
    folder = PartsFolder(out).path
    deadline = time.monotonic() + 60
    while len(list(folder.glob("part-*.json"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    committed = _parts(folder)
    assert 5 <= len(committed) < 40, "the run was not killed part-way"
    assert all(v["square"] == v["n"] ** 2 for v in committed.values())
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert int(rerun.stdout.split()[-1]) >= len(committed)
    final = _parts(folder)
    assert sorted(final) == [f"part-{i:03d}.json" for i in range(40)]
    assert all(v["square"] == v["n"] ** 2 for v in final.values())
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_warm_up_starts_every_worker_before_the_first_task() -> None:
    with open_backend("local", workers=2) as backend:
        backend.warm_up(square)
        assert len(backend._pool._processes) == 2  # the executor's own record of its workers
        results = sorted(r["square"] for r in backend.run(square, [(3, 0.0), (4, 0.0)]))
    assert results == [9, 16]
    SerialBackend().warm_up(square)  # nothing to start, and no error
