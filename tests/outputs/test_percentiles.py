"""The display mapping's percentiles are numpy's, exactly, whatever the pixel type."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.outputs.percentiles import percentiles

Q = (0.0, 0.1, 0.25, 1.0, 37.3, 50.0, 99.5, 99.75, 100.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("n", [1, 2, 3, 101, 65536])
def test_pixels_give_numpys_linear_percentiles(dtype: type, n: int) -> None:
    rng = np.random.default_rng(n)
    values = rng.integers(0, np.iinfo(dtype).max, n).astype(dtype)
    assert np.allclose(percentiles(values, Q), np.percentile(values, Q), rtol=0, atol=1e-9)


def test_a_frame_of_few_distinct_values_and_other_types() -> None:
    frame = np.repeat(np.array([7, 7, 7, 9, 4000], dtype=np.uint16), 3)
    assert np.allclose(percentiles(frame, Q), np.percentile(frame, Q), rtol=0, atol=1e-9)
    for other in (frame.astype(np.float32), frame.astype(np.int32), frame.astype(np.uint32)):
        assert np.allclose(percentiles(other, Q), np.percentile(other, Q), rtol=0, atol=1e-6)
