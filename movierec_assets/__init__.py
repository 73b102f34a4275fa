"""movierec: the Dagster code location. `defs` (a `@dg.definitions` function) is what Dagster loads.

Importing the package builds nothing: the definitions are built when Dagster calls `defs()`, from
the `Settings` resolved from the environment at that moment.
"""

from movierec_assets.definitions import defs

__all__ = ["defs"]
