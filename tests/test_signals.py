"""Stop signals: SIGTERM as Ctrl-C, a second one ends the process, short steps held whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from spectraldl.core.signals import Terminated, held_stops, stops_raise
from spectraldl.jobs.backends import ProcessBackend
from spectraldl.ml.training import publish_model_dir

_TWICE = """
import signal, sys
from spectraldl.core.signals import stops_raise
stop = getattr(signal, sys.argv[1])
with stops_raise():
    try:
        signal.raise_signal(stop)
    except KeyboardInterrupt as first:
        print(type(first).__name__, flush=True)
        signal.raise_signal(stop)  # a second one, during the cleanup: the process ends
        print("the cleanup was interrupted and went on", flush=True)
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_second_stop_signal_ends_the_process_at_once(name: str) -> None:
    """The first raises, so the cleanup written for Ctrl-C runs; a second one used to raise
    inside that cleanup (stopping the worker pool), which then hung for ever."""
    done = subprocess.run(
        [sys.executable, "-c", _TWICE, name], capture_output=True, text=True, timeout=60
    )
    first = "Terminated" if name == "SIGTERM" else "KeyboardInterrupt"
    assert done.stdout == f"{first}\n", done.stderr
    assert done.returncode == -getattr(signal, name)


def test_a_held_step_runs_to_its_end_and_the_signal_acts_after_it() -> None:
    steps = []
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), stops_raise():
        with held_stops():
            steps.append("renamed the old model")
            signal.raise_signal(signal.SIGTERM)
            steps.append("renamed the new model")
        steps.append("went on")
    assert steps == ["renamed the old model", "renamed the new model"]
    assert signal.getsignal(signal.SIGTERM) is previous


def _stop_handling(_task: int) -> tuple[bool, bool]:
    return (
        signal.getsignal(signal.SIGTERM) is signal.SIG_IGN,
        signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
    )


def test_workers_leave_stop_signals_to_the_run() -> None:
    """A worker killed by SIGTERM to its process group while it sent a result left the pool
    waiting for the rest of the message for ever: workers ignore it, the run stops them."""
    backend = ProcessBackend(2)
    try:
        assert set(backend.run(_stop_handling, range(4))) == {(True, True)}
    finally:
        backend.close()


def test_a_model_stopped_while_published_is_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM between the two renames left no model folder and deleted the new model."""
    old, new = tmp_path / "model", tmp_path / ".model.tmp-1"
    for folder, text in ((old, "old"), (new, "new")):
        folder.mkdir()
        (folder / "card.json").write_text(text)
    rename = os.replace

    def stopped_after(source: Path, target: Path) -> None:
        rename(source, target)
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr("spectraldl.ml.training.os.replace", stopped_after)
    with pytest.raises(Terminated), stops_raise():
        publish_model_dir(new, old)
    assert (old / "card.json").read_text() == "new" and not new.exists()
