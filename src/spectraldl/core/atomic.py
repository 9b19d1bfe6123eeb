"""Files that are complete or absent: write to a temporary name beside them, then rename.

The one way every stage writes an output a reader may open at any moment or
a killed run may leave behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path: str | Path, *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    Readers see the old file or the complete new one, never a part. On any
    error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    # Hidden and ending in .tmp, so no reader takes it for a spectrum; with ``keep_suffix``
    # it ends in the path's suffix, for writers that choose the format by it (tables).
    name = f".{path.stem}.tmp{path.suffix}" if keep_suffix else f".{path.name}.tmp"
    tmp = path.with_name(name)
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
