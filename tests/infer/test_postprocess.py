"""Predictions go back to the input grid exactly; cleanup and volumes are checked by hand."""

from __future__ import annotations

import numpy as np

from raysegment.infer.postprocess import (
    binarize,
    foreground_ml,
    largest_connected_component,
    to_input_grid,
)
from raysegment.preprocess import PreprocessConfig, apply_steps, reorient


def test_reorient_resize_and_back_is_the_identity_on_masks():
    """A 'prediction' equal to the preprocessed input mask maps back onto the original mask."""
    rng = np.random.default_rng(0)
    truth = np.zeros((1, 40, 36, 6), np.float32)
    truth[0, 10:30, 8:20, 1:5] = 1
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])  # LPS-like, as BraTS files are
    config = PreprocessConfig(steps=[{"name": "center_crop", "size": 32}, {"name": "resize", "size": 64}], orientation="RAS")
    reoriented, _, transform = reorient(truth + rng.random(truth.shape) * 0.01, affine, config.orientation)
    probs, steps = [], None
    for k in range(reoriented.shape[-1]):
        image, _, steps = apply_steps(reoriented[..., k], None, config)
        probs.append((image > 0.5).astype(np.float32))
    back = to_input_grid(np.stack(probs), steps, transform, volume=True)
    assert back.shape == truth.shape
    np.testing.assert_array_equal(binarize(back, 0.5, False)[0, 4:36, 2:34], truth[0, 4:36, 2:34])  # inside the crop


def test_largest_component_keeps_the_biggest_blob():
    mask = np.zeros((20, 20), np.uint8)
    mask[1:4, 1:4] = 1  # 9 pixels
    mask[10:15, 10:16] = 1  # 30 pixels
    kept = largest_connected_component(mask)
    assert kept.sum() == 30 and kept[12, 12] == 1 and kept[2, 2] == 0
    out = binarize(np.stack([mask, mask]).astype(np.float32) * 0.9, 0.5, largest_component=True)
    assert out.sum() == 60


def test_foreground_volume_uses_the_voxel_size():
    mask = np.zeros((2, 10, 10, 4), np.uint8)
    mask[0, :5, :4, :2] = 1  # 40 voxels
    affine = np.diag([0.5, 2.0, 3.0, 1.0])  # 3 mm^3 per voxel
    np.testing.assert_allclose(foreground_ml(mask, affine), [0.12, 0.0])
