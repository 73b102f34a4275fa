"""Float metadata is stored (and so shown in the UI) with 4 significant digits."""

from __future__ import annotations

import math

import dagster as dg
import numpy as np

from movierec_assets.metadata import rounded, sig


def test_sig_keeps_four_significant_digits() -> None:
    assert sig(12345.678901234567) == 12350.0
    assert sig(0.000123456789) == 0.0001235
    assert sig(-2.718281828) == -2.718
    assert sig(0.0) == 0.0 and sig(7) == 7.0
    assert math.isnan(sig(float("nan"))) and sig(float("inf")) == float("inf")
    assert len(repr(sig(1 / 3))) <= 6


def test_rounded_touches_only_floats() -> None:
    table = dg.MetadataValue.md("| a |")
    meta = rounded({"f": 1 / 3, "m": dg.MetadataValue.float(2 / 3), "np": np.float32(1 / 7), "i": 123456789,
                    "b": True, "s": "0.123456789", "md": table, "none": None})
    assert meta == {"f": 0.3333, "m": dg.MetadataValue.float(0.6667), "np": 0.1429, "i": 123456789, "b": True,
                    "s": "0.123456789", "md": table, "none": None}


def test_a_real_materialization_stores_rounded_floats() -> None:
    @dg.asset
    def timed() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=rounded({
            "seconds": 0.1 + 0.2, "rows_per_s": dg.MetadataValue.float(98765.4321), "rows": 10,
        }))

    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([timed], instance=instance).success
    event = instance.get_latest_materialization_event(dg.AssetKey("timed"))
    assert event is not None and event.asset_materialization is not None
    stored = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert stored == {"seconds": 0.3, "rows_per_s": 98770.0, "rows": 10}
