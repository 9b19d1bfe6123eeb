"""Shared bits of the benchmark scripts: machine description, table and JSON output."""

from __future__ import annotations

import contextlib
import json
import os
import platform
from datetime import date
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """CPU model, logical cores, memory, native bf16 and GPU (if PyTorch sees one).

    Native bf16 (AVX-512 BF16 or AMX) changes which CPU code is fastest, so the
    same benchmark on two EPYCs of different generations can differ widely.
    """
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        from spectraldl.classify.predictor import cpu_has_native_bf16

        info["native_bf16"] = cpu_has_native_bf16()
    except ImportError:
        info["gpu"] = None
    with contextlib.suppress(OSError):
        info["load_avg_1min"] = round(os.getloadavg()[0], 2)
    return info


def print_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Print ``rows`` as an aligned text table under ``title`` and the machine line."""
    info = machine()
    print(f"\n{title}")
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, GPU: {info.get('gpu') or 'none'}, "
        f"load {info.get('load_avg_1min', '?')}"
    )
    cells = [[_fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def write_json(
    path: str | Path | None, name: str, rows: list[dict[str, Any]], **extra: Any
) -> None:
    """Write ``{"benchmark", "date", "machine", "rows", ...}`` to ``path`` when given.

    The date and the machine are what the docs' tables quote (``make docs``).
    """
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "date": date.today().isoformat(),
        "machine": machine(),
        "rows": rows,
        **extra,
    }
    path.write_text(json.dumps(payload, indent=1, default=str))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)
