"""Memory and temporary space of `spectraldl classify` on growing trees of real LAMOST files.

Each tree holds N distinct gzipped copies of the bundled real LAMOST files
(`replicate_real_tree`: a unique id per copy; two gzip members each, so that a
million-file tree is written in minutes). The whole command runs in its
own process group; its peak resident memory (parent and workers summed, sampled
every 50 ms) and the largest size of ``OUT.parts/`` are recorded, with the
final table's size. The baseline is the smallest tree: a bounded job keeps the
peak flat as N grows, an unbounded one grows with it; the slope per 100 000
files projects a 1 M-file release.

    .venv/bin/python benchmarks/memory.py [--sizes 20000,50000,100000] [-j 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from _common import print_table, write_json

from spectraldl.io.bundled import replicate_real_tree


def tree_rss(root: psutil.Process) -> int:
    """Resident bytes of ``root`` and every descendant alive now."""
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def folder_bytes(folder: Path) -> int:
    """Bytes of the files in ``folder`` (0 when it does not exist)."""
    try:
        return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())
    except FileNotFoundError:
        return 0


def measure(command: list[str], parts: Path) -> dict[str, float]:
    """Run ``command``; its wall time, peak tree RSS and the largest size of ``parts``."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = psutil.Process(process.pid)
    peaks = {"rss": 0, "parts": 0}

    def sample() -> None:
        while process.poll() is None:
            peaks["rss"] = max(peaks["rss"], tree_rss(root))
            peaks["parts"] = max(peaks["parts"], folder_bytes(parts))
            time.sleep(0.05)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    _, err = process.communicate()
    watcher.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{err.decode()[-2000:]}")
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss_mib": peaks["rss"] / 2**20,
        "peak_parts_mib": peaks["parts"] / 2**20,
    }


PART = 50_000
"""Copies per part of a tree, each written by one process."""


def grow(tree: Path, made: int, n: int) -> None:
    """Add copies ``made`` .. ``n - 1`` to ``tree`` (two gzip members each, written in parallel)."""
    starts = range(made, n, PART)
    with ProcessPoolExecutor() as pool:
        jobs = [
            pool.submit(
                replicate_real_tree,
                tree / f"part-{start:07d}",
                min(PART, n - start),
                compress=True,
                shared_tail=True,
                first=start,
            )
            for start in starts
        ]
        for job in jobs:
            job.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20000,50000,100000", help="files per tree")
    parser.add_argument("-j", "--workers", type=int, default=2)
    parser.add_argument("--model", default="cnn", help="shipped model or model directory")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        made = 0
        for n in sizes:
            # Grow one tree: the first N files of the largest are the smaller trees.
            subset = Path(tmp) / f"tree-{n}"
            grow(tree, made, n)
            made = n
            subset.mkdir()
            for part in sorted(tree.iterdir()):
                (subset / part.name).symlink_to(part)
            out = Path(tmp) / f"pred-{n}.parquet"
            command = [
                sys.executable,
                "-m",
                "spectraldl.cli",
                "classify",
                args.model,
                str(subset),
                "-o",
                str(out),
                "-j",
                str(args.workers),
            ]
            row = {"files": n, **measure(command, out.with_name(out.name + ".parts"))}
            row["table_mib"] = out.stat().st_size / 2**20
            row["files_per_s"] = n / row["seconds"]
            rows.append(row)
            print(
                f"{n} files: {row['peak_rss_mib']:.0f} MiB peak, {row['seconds']:.0f} s", flush=True
            )
    base = rows[0]
    for row in rows:
        row["rss_vs_smallest"] = row["peak_rss_mib"] / base["peak_rss_mib"]
    if len(rows) > 1 and rows[-1]["files"] < 1_000_000:
        slope = (rows[-1]["peak_rss_mib"] - base["peak_rss_mib"]) / (
            rows[-1]["files"] - base["files"]
        )
        projected = rows[-1]["peak_rss_mib"] + slope * (1_000_000 - rows[-1]["files"])
        rows.append({"files": 1_000_000, "peak_rss_mib": projected, "note": "projected (linear)"})
    columns = [
        "files",
        "seconds",
        "files_per_s",
        "peak_rss_mib",
        "rss_vs_smallest",
        "peak_parts_mib",
        "table_mib",
        "note",
    ]
    print_table(
        f"classify {args.model} on trees of real LAMOST files, -j {args.workers} "
        "(goal: peak under 2 GB at 1 M files)",
        rows,
        columns,
    )
    if args.json:
        write_json(args.json, "memory", rows)


if __name__ == "__main__":
    main()
