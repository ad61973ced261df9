"""Random tumour-like masks for metric tests."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage


def blob(rng: np.random.Generator, shape: tuple[int, ...], fraction: float) -> np.ndarray:
    """A smooth random blob (or a few) covering about ``fraction`` of the image."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=max(1.0, min(shape) / 8))
    return field > np.quantile(field, 1 - fraction)


@pytest.fixture
def make_blob():
    return blob
