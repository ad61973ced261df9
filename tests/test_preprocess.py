"""Preprocessing transforms, label mapping and exact inverse geometry."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import tifffile
from fixtures_data import zscore_inside
from pydantic import ValidationError

from raysegment.preprocess import (
    PreprocessConfig,
    apply_steps,
    invert_geometry,
    iter_examples,
    iter_volume_examples,
    label_image,
    map_labels,
    normalise_slices,
    read_volume,
    reorient,
    reoriented_spacing,
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


def _patient(rng, slices=4, size=16, channels=2) -> list[np.ndarray]:
    """Slices of one patient: a brain square whose brightness and area differ slice by slice (whole numbers, as in a TIFF)."""
    out = []
    for k in range(slices):
        image = np.zeros((channels, size, size), np.float32)
        half = 3 + k
        image[:, 8 - half:8 + half, 8 - half:8 + half] = np.rint(rng.normal(40 + 20 * k, 5 + k, (channels, 2 * half, 2 * half)))
        out.append(image)
    return out


def test_volume_scope_zscore_takes_its_statistics_from_every_slice():
    slices = _patient(np.random.default_rng(3))
    config = PreprocessConfig(steps=[{"name": "zscore", "region": "nonzero", "scope": "volume"}, {"name": "resize", "size": 8}])
    normalised = normalise_slices(slices, config)
    stacked = np.stack(slices, axis=-1)
    for c in range(2):
        np.testing.assert_allclose(np.stack(normalised, axis=-1)[c], zscore_inside(stacked[c]), atol=1e-5)
    # A bright slice stays brighter than a dark one, where a per-slice z-score makes them alike.
    assert normalised[3][0][slices[3][0] != 0].mean() > 0.5 > -0.5 > normalised[0][0][slices[0][0] != 0].mean()
    image, _, record = apply_steps(normalised[0], None, config, volume_normalised=True)
    assert image.shape == (2, 8, 8) and record[0]["op"] == "resize"
    # A lone slice is its own volume.
    alone, _, _ = apply_steps(slices[0], None, config)
    np.testing.assert_allclose(alone[0], apply_steps(zscore_inside(slices[0][0])[None], None, config.model_copy(
        update={"steps": [{"name": "resize", "size": 8}]}))[0][0], atol=1e-5)


def test_volume_scope_percentile_clip_then_zscore_in_order():
    slices = _patient(np.random.default_rng(4), slices=3)
    config = PreprocessConfig(steps=[{"name": "percentile_clip", "low": 1, "high": 99, "rescale": False, "scope": "volume"},
                                     {"name": "zscore", "scope": "volume"}])
    values = np.stack(slices, axis=-1)
    lo = np.percentile(values, 1, axis=(1, 2, 3), keepdims=True)
    hi = np.percentile(values, 99, axis=(1, 2, 3), keepdims=True)
    clipped = np.clip(values, lo, hi)
    expected = np.stack([zscore_inside(clipped[c]) for c in range(2)])
    np.testing.assert_allclose(np.stack(normalise_slices(slices, config), axis=-1), expected, atol=1e-5)


@pytest.mark.parametrize("steps, message", [
    ([{"name": "resize", "size": 8, "scope": "volume"}], "cannot take scope 'volume'"),
    ([{"name": "scale"}, {"name": "zscore", "scope": "volume"}], "must come before"),
    ([{"name": "zscore", "scope": "patient"}], "scope must be"),
])
def test_volume_scope_is_for_leading_intensity_steps_only(steps, message):
    with pytest.raises(ValidationError, match=message):
        PreprocessConfig(steps=steps)


def test_a_volume_row_is_normalised_over_all_its_slices_whichever_are_used(tmp_path):
    rng = np.random.default_rng(5)
    image = np.zeros((12, 12, 5), np.int16)
    image[2:10, 2:10] = rng.integers(20, 200, (8, 8, 5))
    seg = np.zeros(image.shape, np.uint8)
    seg[4:6, 4:6, 1] = 1
    for name, data in {"t1": image, "seg": seg}.items():
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / f"{name}.nii.gz")
    row = {"case_id": "c1", "level": "volume", "image_uris": [str(tmp_path / "t1.nii.gz")], "channels": ["t1"],
           "mask_uri": str(tmp_path / "seg.nii.gz"), "slice_index": None}
    config = PreprocessConfig(slice_selection="foreground", steps=[{"name": "zscore", "scope": "volume"}])
    (example,) = iter_examples(row, config)
    assert example["slice_index"] == 1
    np.testing.assert_allclose(example["image"][0], zscore_inside(image.astype(np.float64))[..., 1], atol=1e-5)


def test_volume_examples_of_slice_rows_count_every_slice_and_yield_the_kept(tmp_path):
    slices = _patient(np.random.default_rng(6), slices=4, channels=3)
    rows = []
    for k, image in enumerate(slices):
        tifffile.imwrite(tmp_path / f"p_{k}.tif", np.moveaxis(image, 0, -1).astype(np.uint8), photometric="rgb")
        tifffile.imwrite(tmp_path / f"p_{k}_mask.tif", (image[0] > 45).astype(np.uint8) * 255)
        rows.append({"case_id": f"p_{k}", "level": "slice", "volume_id": "p", "slice_index": k, "channels": ["a", "b", "c"],
                     "image_uris": [str(tmp_path / f"p_{k}.tif")], "mask_uri": str(tmp_path / f"p_{k}_mask.tif")})
    config = PreprocessConfig(steps=[{"name": "zscore", "scope": "volume"}])
    examples = list(iter_volume_examples(rows, config, keep={"p_1", "p_3"}))
    assert [e["case_id"] for e in examples] == ["p_1", "p_3"] and examples[0]["mask"].shape == (1, 16, 16)
    stacked = np.stack(slices, axis=-1)
    for example, k in zip(examples, (1, 3)):
        for c in range(3):
            np.testing.assert_allclose(example["image"][c], zscore_inside(stacked[c])[..., k], atol=1e-5)


BRATS = {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}


@pytest.mark.parametrize("rules, raw", [
    (BRATS, [0, 1, 2, 4]),
    ({"anterior": [1], "posterior": [2]}, [0, 1, 2]),
    ({"liver": [1], "tumour": [2, 3]}, [0, 1, 2]),  # a class of several values comes back as its first
    ({"lesion": [300]}, [0, 300]),
])
def test_label_image_restores_the_source_values(rules, raw):
    labels = np.array(raw * 3).reshape(3, len(raw))
    image = label_image(map_labels(labels, rules), rules)
    np.testing.assert_array_equal(map_labels(image, rules), map_labels(labels, rules))
    if rules is not BRATS and len(rules) > 1 and any(len(v) > 1 for v in rules.values()):
        assert set(np.unique(image)) == {0, 1, 2}
    else:
        np.testing.assert_array_equal(image, labels)
    assert image.dtype == (np.uint16 if max(raw) > 255 else np.uint8)


def test_label_image_settles_patterns_no_value_has():
    # Predicted regions need not nest: TC without WT is read as TC's own value, ET alone as ET's.
    mask = np.array([[0, 1, 0, 1], [1, 0, 0, 1], [0, 0, 1, 0]])[:, None]
    np.testing.assert_array_equal(label_image(mask, BRATS)[0], [1, 2, 4, 1])
    assert label_image(np.ones((1, 2, 2)), {"tumor": "nonzero"}) is None  # 0/255 or 0/1, as the writer stores one class
    np.testing.assert_array_equal(label_image(np.array([[[0, 1, 1]], [[0, 0, 1]]]), {"WT": "nonzero", "ET": [4]}), [[0, 1, 4]])


# --- 3D models: whole volumes at one voxel spacing -------------------------------------------------


def test_read_volume_resamples_to_the_target_spacing_and_inverts_to_the_scan_grid(tmp_path):
    """A 3D config z-scores the whole volume, reorients it and resamples it to ``spacing``; the
    recorded geometry brings a probability map back to the scan's own grid and voxel order."""
    shape, zooms = (20, 24, 10), (-1.0, -1.0, 2.0)
    seg = np.zeros(shape, np.uint8)
    seg[4:12, 6:14, 3:7] = 1
    seg[12:16, 6:14, 3:7] = 2
    rng = np.random.default_rng(0)
    image = (100 + 10 * rng.normal(size=shape) + 50 * (seg > 0)).astype(np.float32)
    affine = np.diag([*zooms, 1.0])
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "t1.nii.gz")
    nib.save(nib.Nifti1Image(seg, affine), tmp_path / "seg.nii.gz")
    row = {"case_id": "c1", "level": "volume", "image_uris": [str(tmp_path / "t1.nii.gz")], "channels": ["t1"],
           "mask_uri": str(tmp_path / "seg.nii.gz")}
    config = PreprocessConfig(labels={"a": [1], "p": [2]}, dims=3, steps=[{"name": "zscore", "region": "all"}],
                              orientation="RAS", spacing=[2.0, 1.0, 1.0], patch_size=[8, 16, 16])
    volume = read_volume(row, config)
    assert volume["spacing"] == (1.0, 1.0, 2.0) and volume["file_spacing"] == (1.0, 1.0, 2.0)
    # Resampled to 2 x 1 x 1 mm: half the voxels along the first axis, twice as many along the last.
    assert volume["image"].shape == (1, 10, 24, 20) and volume["mask"].shape == (2, 10, 24, 20)
    # z-scored on the scan's grid (nnU-Net normalises before it resamples): exactly, before the resampling.
    raw = volume["raw"][0]
    np.testing.assert_allclose(normalise_slices([volume["raw"]], config)[0][0], (raw - raw.mean()) / raw.std(), atol=1e-4)
    assert abs(volume["image"].mean()) < 0.05
    # The resampled mask keeps each structure's volume in mm^3 (voxel counts x voxel size).
    for k, label in enumerate((1, 2)):
        assert volume["mask"][k].sum() * 2.0 == pytest.approx((seg == label).sum() * 2.0, rel=0.15)
    # The way back: the resampled truth as a "probability", inverted onto the file's grid.
    back = restore_orientation(invert_geometry(volume["mask"], volume["geometry"]["steps"], mode="linear"),
                               volume["geometry"]["orientation"])
    assert back.shape == (2, *shape)
    assert ((back[0] > 0.5) == (seg == 1)).mean() > 0.98 and ((back[1] > 0.5) == (seg == 2)).mean() > 0.98
    np.testing.assert_array_equal(restore_orientation(volume["truth"], volume["geometry"]["orientation"]) > 0.5,
                                  np.stack([seg == 1, seg == 2]))


def test_reoriented_spacing_follows_the_axes():
    affine = np.array([[0, -2.0, 0, 10], [-1.0, 0, 0, 20], [0, 0, 3.0, -5], [0, 0, 0, 1]])
    _, new_affine, transform = reorient(np.zeros((1, 5, 6, 7)), affine, "RAS")
    spacing = reoriented_spacing((1.0, 2.0, 3.0), transform)
    assert spacing == tuple(np.linalg.norm(new_affine[:3, :3], axis=0))
    assert reoriented_spacing((1.0, 2.0, 3.0), None) == (1.0, 2.0, 3.0)


@pytest.mark.parametrize("options,message", [
    ({"steps": [{"name": "zscore"}, {"name": "resize", "size": 64}]}, "cut or resize slices"),
    ({"patch_size": [32, 32]}, "three positive numbers"),
    ({"spacing": [1.0, 0.0, 1.0]}, "three positive numbers"),
])
def test_3d_settings_are_checked(options, message):
    with pytest.raises(ValidationError, match=message):
        PreprocessConfig(dims=3, **{"steps": [{"name": "zscore"}], **options})
    with pytest.raises(ValidationError, match="settings of 3D models"):
        PreprocessConfig(patch_size=[8, 8, 8])
