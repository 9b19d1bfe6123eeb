"""Values as strict JSON can hold them: the one converter every JSON writer uses."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON values, recursively.

    numpy scalars and arrays become Python numbers and lists, NaN and
    infinities None (strict JSON has neither), a masked value None, bytes
    UTF-8 text, mapping keys strings; anything else that JSON cannot hold
    becomes its ``str``.
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if value is np.ma.masked:
        return None
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)
