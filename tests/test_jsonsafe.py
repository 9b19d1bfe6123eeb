"""`spectraldl.core.jsonsafe`: what strict JSON cannot hold, made plain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spectraldl.core.jsonsafe import json_safe


def test_numpy_nan_bytes_masked_and_paths_become_strict_json() -> None:
    value = {
        "f": np.float32(1.5),
        "i": np.int64(3),
        "nan": float("nan"),
        "inf": np.float64(np.inf),
        "arr": np.array([1.0, np.nan]),
        "b": b"caf\xc3\xa9",
        "masked": np.ma.masked,
        "path": Path("/data/x.fits"),
        7: (True, None),
    }
    plain = json_safe(value)
    assert plain == {
        "f": 1.5,
        "i": 3,
        "nan": None,
        "inf": None,
        "arr": [1.0, None],
        "b": "café",
        "masked": None,
        "path": "/data/x.fits",
        "7": [True, None],
    }
    assert json.loads(json.dumps(plain, allow_nan=False)) == plain
    assert type(plain["i"]) is int and type(plain["f"]) is float
