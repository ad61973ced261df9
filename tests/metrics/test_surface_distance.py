"""HD95 and ASSD against MONAI's HausdorffDistanceMetric(percentile=95) and SurfaceDistanceMetric(symmetric=True)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import HausdorffDistanceMetric, SurfaceDistanceMetric

from raysegment.metrics import distance_metrics, surface_distances

# MONAI 1.6 warns about its own internal use of a deprecated argument
pytestmark = pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")


def monai_distances(pred: np.ndarray, target: np.ndarray, spacing) -> tuple[float, float]:
    p = torch.from_numpy(pred[None, None].astype(np.float32))
    t = torch.from_numpy(target[None, None].astype(np.float32))
    hd95 = HausdorffDistanceMetric(include_background=True, percentile=95)(p, t, spacing=list(spacing))
    assd = SurfaceDistanceMetric(include_background=True, symmetric=True)(p, t, spacing=list(spacing))
    return float(hd95), float(assd)


def assert_matches_monai(pred, target, spacing):
    ours = distance_metrics(pred, target, spacing)
    hd95, assd = monai_distances(pred, target, spacing)
    assert ours["distance_undefined"] is False
    assert ours["hd95"] == pytest.approx(hd95, rel=1e-5, abs=1e-5)
    assert ours["assd"] == pytest.approx(assd, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(
    "shape,spacing",
    [((48, 40), (1.0, 1.0)), ((48, 40), (0.7, 2.3)), ((24, 20, 16), (1.0, 1.0, 1.0)), ((24, 20, 16), (0.9, 0.9, 3.0))],
)
def test_random_blobs_match_monai(seed, shape, spacing, make_blob):
    rng = np.random.default_rng(seed)
    target = make_blob(rng, shape, fraction=rng.uniform(0.05, 0.3))
    pred = make_blob(rng, shape, fraction=rng.uniform(0.05, 0.3)) | (target & (rng.random(shape) > 0.3))
    assert_matches_monai(pred, target, spacing)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.5, 1.5, 4.0)])
def test_edge_cases_match_monai(spacing):
    shape = (12, 10, 8)
    single = np.zeros(shape, bool)
    single[3, 4, 5] = True
    other = np.zeros(shape, bool)
    other[9, 1, 2] = True
    full = np.ones(shape, bool)
    cube = np.zeros(shape, bool)
    cube[2:7, 3:8, 1:6] = True
    border = np.zeros(shape, bool)
    border[0:4, :, 0:3] = True  # touches the image edge: the edge counts as surface
    for pred, target in [(single, other), (single, single), (full, cube), (cube, full), (full, full), (border, cube), (cube, single)]:
        assert_matches_monai(pred, target, spacing)


def test_single_voxels_by_hand():
    a, b = np.zeros((5, 5, 5), bool), np.zeros((5, 5, 5), bool)
    a[0, 0, 0], b[2, 2, 1] = True, True
    distance = math.sqrt((2 * 0.5) ** 2 + (2 * 1.0) ** 2 + (1 * 3.0) ** 2)
    result = distance_metrics(a, b, (0.5, 1.0, 3.0))
    assert result == {"hd95": pytest.approx(distance), "assd": pytest.approx(distance), "distance_undefined": False}


def test_directed_distances_by_hand():
    target = np.zeros((1, 9), bool)
    target[0, 0:3] = True  # surface: all three pixels (the row is one pixel high)
    pred = np.zeros((1, 9), bool)
    pred[0, 5] = True
    forward, backward = surface_distances(pred, target, (1.0, 2.0))
    np.testing.assert_allclose(forward, [6.0])  # 3 columns to the nearest target pixel, 2 mm each
    np.testing.assert_allclose(sorted(backward), [6.0, 8.0, 10.0])


def test_identical_masks_have_zero_distance():
    mask = np.zeros((16, 16), bool)
    mask[3:9, 4:12] = True
    assert distance_metrics(mask, mask, (1.0, 1.0)) == {"hd95": 0.0, "assd": 0.0, "distance_undefined": False}


def test_empty_conventions():
    empty, some = np.zeros((8, 8, 8), bool), np.zeros((8, 8, 8), bool)
    some[2:4, 2:4, 2:4] = True
    assert distance_metrics(empty, empty, (1, 1, 1)) == {"hd95": 0.0, "assd": 0.0, "distance_undefined": False}
    for pred, target in [(empty, some), (some, empty)]:
        result = distance_metrics(pred, target, (1, 1, 1))
        assert math.isnan(result["hd95"]) and math.isnan(result["assd"]) and result["distance_undefined"] is True


def test_spacing_must_match_dimensions():
    mask = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match="one spacing per axis"):
        surface_distances(mask, mask, (1.0, 1.0, 1.0))
