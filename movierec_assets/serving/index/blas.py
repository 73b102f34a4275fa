"""Setting numpy's OpenBLAS thread count at run time (threadpoolctl is not a dependency).

The server parallelises across batches (one batch per worker thread), so each GEMM should run on
one BLAS thread: OpenBLAS' own threads spin-wait for each other, and on a shared 2-core machine a
busy neighbour made a 64-user GEMM 2-3x slower with 2 BLAS threads than with 1 (measured).
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os

import numpy as np

log = logging.getLogger(__name__)
_SETTERS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads")


def _openblas() -> ctypes.CDLL | None:
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "*openblas*"))):
        try:
            return ctypes.CDLL(path)  # already loaded by numpy: the same handle
        except OSError:
            continue
    return None


def set_blas_threads(n: int) -> bool:
    """Sets numpy's OpenBLAS threads to n; False (and a log line) when that cannot be done."""
    lib = _openblas()
    for name in _SETTERS if lib is not None else ():
        setter = getattr(lib, name, None)
        if setter is not None:
            setter(ctypes.c_int(n))
            return True
    log.warning("could not set the BLAS thread count (no OpenBLAS found beside numpy)")
    return False
