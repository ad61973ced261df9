"""Preprocessing transforms, label mapping and exact inverse geometry."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from pydantic import ValidationError

from raysegment.preprocess import (
    PreprocessConfig,
    apply_steps,
    invert_geometry,
    iter_examples,
    map_labels,
    reorient,
    restore_orientation,
)


def _disk(shape, center, radius):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return ((yy - center[0]) ** 2 + (xx - center[1]) ** 2) <= radius**2


def test_label_mapping_brats_regions_overlap():
    labels = np.array([[0, 1, 2, 4]])
    mask = map_labels(labels, {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]})
    assert mask.shape == (3, 1, 4)
    np.testing.assert_array_equal(mask[:, 0], [[0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]])
    np.testing.assert_array_equal(map_labels(np.array([0, 255]), {"fg": "nonzero"}), [[0, 1]])


def test_intensity_steps():
    rng = np.random.default_rng(0)
    image = rng.normal(100, 20, (2, 32, 32)).astype(np.float32)
    scaled, _, _ = apply_steps(image, None, PreprocessConfig(steps=[{"name": "scale"}]))
    assert scaled.min() == pytest.approx(0) and scaled.max() == pytest.approx(1)
    clipped, _, _ = apply_steps(image, None, PreprocessConfig(steps=[{"name": "percentile_clip", "low": 5, "high": 95}]))
    assert clipped.min() == 0 and clipped.max() == pytest.approx(1)
    assert (clipped == 0).mean() == pytest.approx(0.05, abs=0.01)
    brain = np.zeros_like(image)
    brain[:, 8:24, 8:24] = image[:, 8:24, 8:24]
    z, _, _ = apply_steps(brain, None, PreprocessConfig(steps=[{"name": "zscore"}]))
    inside = z[:, 8:24, 8:24]
    np.testing.assert_allclose(inside.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(inside.std(axis=(1, 2)), 1, atol=1e-4)
    assert (z[:, :8] == 0).all()


def test_crop_then_resize_inverts_to_the_original_grid():
    mask = _disk((100, 140), (50, 70), 30)[None].astype(np.float32)
    image = mask * 200 + 10
    config = PreprocessConfig(steps=[{"name": "center_crop", "size": [96, 96]}, {"name": "resize", "size": 48}, {"name": "scale"}])
    out_image, out_mask, record = apply_steps(image, mask, config)
    assert out_image.shape == (1, 48, 48) and out_mask.shape == (1, 48, 48)
    back = invert_geometry(out_mask, record)
    assert back.shape == mask.shape
    dice = 2 * (back * mask).sum() / (back.sum() + mask.sum())
    assert dice > 0.97
    # the cropped-away border comes back as background, exactly
    assert (back[:, :, :22] == 0).all() and (back[:, :, -22:] == 0).all()


def test_crop_pads_small_images_and_inverts_exactly():
    mask = _disk((40, 50), (20, 25), 10)[None].astype(np.float32)
    _, out, record = apply_steps(mask, mask, PreprocessConfig(steps=[{"name": "center_crop", "size": 64}]))
    assert out.shape == (1, 64, 64)
    np.testing.assert_array_equal(invert_geometry(out, record), mask)


def test_unknown_step_is_rejected_with_valid_names():
    with pytest.raises(ValidationError, match="resize"):
        PreprocessConfig(steps=[{"name": "resise"}])


def test_reorientation_round_trip_to_ras():
    array = np.random.default_rng(1).random((2, 5, 6, 7))
    affine = np.array([[0, -2.0, 0, 10], [-1.0, 0, 0, 20], [0, 0, 3.0, -5], [0, 0, 0, 1]])
    out, new_affine, transform = reorient(array, affine, "RAS")
    assert "".join(nib.aff2axcodes(new_affine)) == "RAS"
    # the same voxel keeps its world position
    ijk = np.array([1, 2, 3, 1.0])
    world = affine @ ijk
    new_ijk = np.linalg.solve(new_affine, world)
    assert out[(0, *np.rint(new_ijk[:3]).astype(int))] == array[(0, 1, 2, 3)]
    np.testing.assert_array_equal(restore_orientation(out, transform), array)


def test_iter_examples_on_a_volume_row(tmp_path):
    shape = (20, 24, 6)
    seg = np.zeros(shape, np.uint8)
    seg[5:10, 5:10, 2:4] = 4
    seg[10:12, 10:12, 2] = 2
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])
    for name, data in {"flair": seg * 10 + 1, "t1": seg + 3, "seg": seg}.items():
        nib.save(nib.Nifti1Image(data.astype(np.int16), affine), tmp_path / f"{name}.nii.gz")
    row = {"case_id": "c1", "level": "volume", "image_uris": [str(tmp_path / "flair.nii.gz"), str(tmp_path / "t1.nii.gz")],
           "channels": ["flair", "t1"], "mask_uri": str(tmp_path / "seg.nii.gz"), "slice_index": None}
    config = PreprocessConfig(channels=["t1"], labels={"WT": [1, 2, 4], "ET": [4]}, slice_selection="foreground",
                              steps=[{"name": "resize", "size": 16}], orientation="RAS")
    examples = list(iter_examples(row, config))
    assert [e["slice_index"] for e in examples] == [2, 3]
    assert examples[0]["image"].shape == (1, 16, 16) and examples[0]["mask"].shape == (2, 16, 16)
    assert examples[0]["mask"][0].sum() > examples[1]["mask"][0].sum()  # the edema is on slice 2 only
    assert examples[0]["geometry"]["orientation"] is not None
