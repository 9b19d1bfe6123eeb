"""Commands run as processes of their own: what is left of one run in its own session
(``start_new_session=True``) once it ended, and one refused while another holds its output."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spectraldl.jobs.files import output_lock


def running_in_group(pgid: int) -> list[int]:
    """The processes of group ``pgid`` still running, read from /proc.

    Zombies are left out: an orphan's zombie waits for the machine's first
    process to reap it, which in a container may never come.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def left_in_group(pgid: int, *, within_s: float = 15.0) -> list[int]:
    """The processes of group ``pgid`` still running after waiting up to ``within_s`` for none."""
    deadline = time.monotonic() + within_s
    while (left := running_in_group(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def refused_while_locked(
    locked: str | Path, args: Sequence[str], *, named: str | Path | None = None, **run: Any
) -> None:
    """``spectraldl ARGS`` in a process of its own, while this one holds ``locked``'s lock:
    refused at once with one line naming the output (as ``named``, default ``locked``) and
    this process as the run writing it."""
    with output_lock(locked):
        second = subprocess.run(
            [sys.executable, "-m", "spectraldl.cli", *args],
            capture_output=True,
            text=True,
            check=False,
            **run,
        )
    assert second.returncode == 1, second.stdout + second.stderr
    (line,) = second.stderr.splitlines()
    who = named if named is not None else locked
    assert line.startswith(f"Error: {who} is being written by another run (pid {os.getpid()} ")


def run_unprivileged(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -c SCRIPT ARGS`` as the user nobody where this runs as root (root reads and
    writes every folder, so permissions would test nothing), else as this user."""
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    return subprocess.run(
        [*(nobody if os.geteuid() == 0 else []), sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
