"""Float metadata as the UI should show it: 4 significant digits, not a float's 17.

Every asset passes its metadata dict through `rounded` (or a single value through `sig`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import dagster as dg

DIGITS = 4


def sig(value: float, digits: int = DIGITS) -> float:
    """`value` rounded to `digits` significant digits (nan and infinities unchanged)."""
    value = float(value)
    if not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.{digits}g}")


def rounded(metadata: Mapping[str, Any], digits: int = DIGITS) -> dict[str, Any]:
    """A copy of `metadata` with every float (plain, numpy or `MetadataValue.float`) rounded to
    `digits` significant digits; everything else (ints, bools, text, tables) as it was."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, dg.FloatMetadataValue) and value.value is not None:
            value = dg.MetadataValue.float(sig(value.value, digits))
        elif isinstance(value, float) or _is_numpy_float(value):
            value = sig(value, digits)
        out[key] = value
    return out


def _is_numpy_float(value: Any) -> bool:
    import numpy as np

    return isinstance(value, np.floating)
