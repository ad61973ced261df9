"""Per-case metrics: Dice against MONAI, volumes by hand, 2D and 3D, class names."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric

from raysegment.metrics import CASE_METRICS, case_metrics, distance_metrics

pytestmark = pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")


def test_volume_case_against_monai_and_hand(make_blob):
    rng = np.random.default_rng(3)
    shape, spacing = (20, 18, 12), (0.9, 0.9, 2.5)
    target = np.stack([make_blob(rng, shape, 0.2), make_blob(rng, shape, 0.05)])
    pred = np.stack([make_blob(rng, shape, 0.15), target[1] & (rng.random(shape) > 0.2)])
    rows = case_metrics(pred, target, spacing, class_names=["whole", "core"])
    assert [r["class"] for r in rows] == ["whole", "core"]
    dice_metric = DiceMetric(include_background=True, reduction="none")
    monai_dice = dice_metric(torch.from_numpy(pred[None]).float(), torch.from_numpy(target[None]).float())
    voxel_ml = 0.9 * 0.9 * 2.5 / 1000
    for k, row in enumerate(rows):
        assert set(CASE_METRICS) | {"class", "distance_undefined"} == set(row)
        assert row["dice"] == pytest.approx(float(monai_dice[0, k]), rel=1e-6)
        assert row["volume_pred"] == pytest.approx(pred[k].sum() * voxel_ml)
        assert row["volume_true"] == pytest.approx(target[k].sum() * voxel_ml)
        assert row["avd"] == pytest.approx(abs(int(pred[k].sum()) - int(target[k].sum())) * voxel_ml)
        assert row["recall"] == pytest.approx((pred[k] & target[k]).sum() / target[k].sum())
        distances = distance_metrics(pred[k], target[k], spacing)
        assert (row["hd95"], row["assd"]) == (distances["hd95"], distances["assd"])


def test_slice_case_uses_area_in_square_mm():
    pred, target = np.zeros((1, 10, 10), bool), np.zeros((1, 10, 10), bool)
    pred[0, 2:6, 2:6] = True  # 16 pixels
    target[0, 2:6, 2:8] = True  # 24 pixels
    (row,) = case_metrics(pred, target, (0.5, 2.0))
    assert row["class"] == 0
    assert (row["volume_pred"], row["volume_true"], row["avd"]) == (16.0, 24.0, 8.0)
    assert row["dice"] == pytest.approx(32 / 40)
    # surfaces: 12 pred pixels (2 of them 0.5 mm from the target's surface, the rest on it) and 16
    # target pixels (10 on the pred surface, then 2, 2, 4, 4, 4, 4 mm along the 2 mm columns)
    assert row["hd95"] == pytest.approx(4.0)
    assert row["assd"] == pytest.approx((2 * 0.5 + 20.0) / 28)
    assert row["distance_undefined"] is False


def test_empty_and_full_cases():
    empty, full = np.zeros((1, 6, 6, 4), bool), np.ones((1, 6, 6, 4), bool)
    (both_empty,) = case_metrics(empty, empty, (1, 1, 1))
    assert both_empty["dice"] == both_empty["iou"] == both_empty["precision"] == both_empty["recall"] == 1.0
    assert both_empty["hd95"] == both_empty["assd"] == 0.0 and both_empty["avd"] == 0.0
    (missed,) = case_metrics(empty, full, (1, 1, 1))
    assert missed["dice"] == 0.0 and missed["distance_undefined"] is True and math.isnan(missed["hd95"])
    assert missed["volume_true"] == pytest.approx(6 * 6 * 4 / 1000)
    (perfect,) = case_metrics(full, full, (1, 1, 1))
    assert perfect["dice"] == perfect["specificity"] == 1.0 and perfect["hd95"] == 0.0


def test_bad_inputs():
    mask = np.zeros((2, 4, 4), bool)
    with pytest.raises(ValueError, match="one spacing per spatial axis"):
        case_metrics(mask, mask, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="1 class names for 2 classes"):
        case_metrics(mask, mask, (1.0, 1.0), class_names=["a"])
