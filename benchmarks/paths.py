"""Where the benchmarks find things, with no path of the machine they were written on.

The real MovieLens sample is `$MOVIEREC_ML_SMALL`, else `../shared/movielens/ml-latest-small`
relative to the repository root. Profiles are written with repo-relative paths.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV_ML_SMALL = "MOVIEREC_ML_SMALL"


def ml_small() -> Path:
    """The ml-latest-small directory (it may not exist: callers check for ratings.csv)."""
    configured = os.environ.get(ENV_ML_SMALL)
    return Path(configured) if configured else ROOT.parent / "shared" / "movielens" / "ml-latest-small"


def _prefixes() -> list[tuple[str, str]]:
    """(absolute prefix, replacement), longest first: the checkout, then the interpreter's stdlib."""
    pairs = {str(ROOT) + os.sep: ""}
    for key in ("stdlib", "platstdlib"):
        path = sysconfig.get_paths().get(key)
        if path and not path.startswith(str(ROOT)):
            pairs[path.rstrip(os.sep) + os.sep] = "<stdlib>/"
    return sorted(pairs.items(), key=lambda kv: len(kv[0]), reverse=True)


def repo_relative(text: str) -> str:
    """`text` with the checkout's absolute prefix removed and the stdlib's replaced by `<stdlib>/`."""
    for prefix, replacement in _prefixes():
        text = text.replace(prefix, replacement)
    return text
