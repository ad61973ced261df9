"""Predictions go back to the input grid exactly; cleanup (3D over a patient's slices) and volumes are checked by hand."""

from __future__ import annotations

import numpy as np

from raysegment.infer.postprocess import foreground_ml, postprocess_unit, to_input_grid
from raysegment.postprocess import PostprocessConfig, largest_connected_component
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
    np.testing.assert_array_equal(PostprocessConfig().apply(back)[0, 4:36, 2:34], truth[0, 4:36, 2:34])  # inside the crop


def test_largest_component_keeps_the_biggest_blob():
    mask = np.zeros((20, 20), np.uint8)
    mask[1:4, 1:4] = 1  # 9 pixels
    mask[10:15, 10:16] = 1  # 30 pixels
    kept = largest_connected_component(mask)
    assert kept.sum() == 30 and kept[12, 12] == 1 and kept[2, 2] == 0
    out = PostprocessConfig(largest_component=True).apply(np.stack([mask, mask]).astype(np.float32) * 0.9)
    assert out.sum() == 60


def _slices_with_an_island(shapes=((20, 20),) * 3) -> list[np.ndarray]:
    """Probabilities of 3 slices: a blob through slices 0-1 and a smaller one alone on slice 2, not touching it in 3D."""
    probs = [np.zeros((1, *shape), np.float32) for shape in shapes]
    probs[0][0, 2:8, 2:8] = probs[1][0, 2:8, 2:8] = 0.9  # 72 voxels
    probs[2][0, 12:15, 12:15] = 0.9  # 9 voxels, the only ones on its slice
    return probs


def test_a_patients_slices_keep_their_largest_3d_component():
    masks = postprocess_unit(_slices_with_an_island(), PostprocessConfig(largest_component=True))
    assert [m.shape for m in masks] == [(1, 20, 20)] * 3 and all(m.dtype == np.uint8 for m in masks)
    assert masks[0].sum() == masks[1].sum() == 36 and masks[2].sum() == 0  # in 2D the island would be slice 2's largest
    kept = postprocess_unit(_slices_with_an_island(), PostprocessConfig(largest_component=False))
    assert [int(m.sum()) for m in kept] == [36, 36, 9]


def test_slices_of_different_shapes_are_cleaned_one_by_one():
    masks = postprocess_unit(_slices_with_an_island([(20, 20), (20, 20), (24, 20)]), PostprocessConfig(largest_component=True))
    assert [int(m.sum()) for m in masks] == [36, 36, 9] and masks[2].shape == (1, 24, 20)


def test_foreground_volume_uses_the_voxel_size():
    mask = np.zeros((2, 10, 10, 4), np.uint8)
    mask[0, :5, :4, :2] = 1  # 40 voxels
    affine = np.diag([0.5, 2.0, 3.0, 1.0])  # 3 mm^3 per voxel
    np.testing.assert_allclose(foreground_ml(mask, affine), [0.12, 0.0])
