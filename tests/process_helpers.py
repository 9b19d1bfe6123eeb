"""What is left of a command run in its own session (``start_new_session=True``) once it ended."""

from __future__ import annotations

import time
from pathlib import Path


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
