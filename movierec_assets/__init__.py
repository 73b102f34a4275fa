"""movierec: the Dagster code location. `defs` is what `dagster dev` loads."""

from movierec_assets.definitions import defs

__all__ = ["defs"]
