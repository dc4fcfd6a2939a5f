"""Percentiles of detector images, exact and in linear time for 8- and 16-bit pixels.

``np.percentile`` partially sorts its input for each call; on the write's critical path that
was a quarter of the display mapping's time. Unsigned pixels of at most 16 bits have at most
65,536 values, so their histogram gives every order statistic at once, and with it exactly
what ``np.percentile`` (method "linear") returns: ``x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋])``
with ``h = (n − 1)·q/100``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt


def percentiles(values: npt.NDArray[np.generic], q: Sequence[float]) -> npt.NDArray[np.float64]:
    """``np.percentile(values, q)`` for every element of ``values`` (a flat result per q)."""
    if values.dtype.kind != "u" or values.dtype.itemsize > 2 or values.size == 0:
        return np.asarray(np.percentile(cast(Any, values), q), dtype=np.float64)
    counts = np.bincount(values.ravel())
    below = np.cumsum(counts)  # below[v]: how many values are <= v
    h = (values.size - 1) * np.asarray(q, dtype=np.float64) / 100.0
    lo = np.floor(h)
    hi = np.minimum(lo + 1, values.size - 1)
    x_lo = np.searchsorted(below, lo, side="right").astype(np.float64)
    x_hi = np.searchsorted(below, hi, side="right").astype(np.float64)
    out: npt.NDArray[np.float64] = x_lo + (h - lo) * (x_hi - x_lo)
    return out
