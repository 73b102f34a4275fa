"""movierec: the Dagster code location. `defs` is what `dagster dev` loads.

`defs` is built on first access (PEP 562), not at package import: the CLI prepares the dataset and
its split manifest first, and the daily partitions are read from that manifest.
"""

from __future__ import annotations

from typing import Any

__all__ = ["defs"]


def __getattr__(name: str) -> Any:
    if name == "defs":
        from movierec_assets.definitions import defs

        return defs
    raise AttributeError(f"module 'movierec_assets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "defs"])
