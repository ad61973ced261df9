"""read_mask: one channel of integer labels, raw values kept."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from raysegment.errors import ScanReadError
from raysegment.readers import read_mask


def test_lgg_mask_keeps_0_and_255(tmp_path):
    mask = np.zeros((256, 256), np.uint8)
    mask[100:140, 90:150] = 255
    tifffile.imwrite(tmp_path / "TCGA_CS_4941_19960909_11_mask.tif", mask)

    scan = read_mask(str(tmp_path / "TCGA_CS_4941_19960909_11_mask.tif"))

    assert scan.array.shape == (1, 256, 256) and scan.array.dtype == np.uint8
    assert set(np.unique(scan.array)) == {0, 255}
    assert scan.channels == ("label",)


def test_brats_labels_survive_float_storage(tmp_path):
    labels = np.random.default_rng(0).choice([0, 1, 2, 4], size=(6, 7, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(labels, np.diag([-1.0, -1.0, 1.0, 1.0])), tmp_path / "seg.nii.gz")

    scan = read_mask(str(tmp_path / "seg.nii.gz"))

    assert scan.array.dtype == np.uint8
    np.testing.assert_array_equal(scan.array[0], labels.astype(np.uint8))
    assert set(np.unique(scan.array)) == {0, 1, 2, 4}
    assert scan.orientation == "LPS"


def test_negative_and_large_float_labels_get_a_wide_enough_integer_type(tmp_path):
    labels = np.array([[[-1.0, 0.0], [300.0, 2.0]]], dtype=np.float64)
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "wide.nii")

    scan = read_mask(str(tmp_path / "wide.nii"))

    assert scan.array.dtype == np.int16
    np.testing.assert_array_equal(scan.array[0], labels)


def test_non_integer_values_are_an_error(tmp_path):
    nib.save(nib.Nifti1Image(np.full((2, 2, 2), 0.5, np.float32), np.eye(4)), tmp_path / "prob.nii")

    with pytest.raises(ScanReadError, match=r"prob\.nii: mask holds non-integer values"):
        read_mask(str(tmp_path / "prob.nii"))


def test_gray_painted_rgb_and_opaque_rgba_masks_collapse_to_one_channel(tmp_path):
    gray = np.zeros((8, 8), np.uint8)
    gray[2:5, 3:7] = 255
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "rgb.png")
    Image.fromarray(np.stack([gray] * 3 + [np.full_like(gray, 255)], axis=-1)).save(tmp_path / "rgba.png")

    for name in ("rgb.png", "rgba.png"):
        scan = read_mask(str(tmp_path / name))
        assert scan.array.shape == (1, 8, 8)
        np.testing.assert_array_equal(scan.array[0], gray)


def test_colour_masks_with_different_channels_are_an_error(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = np.arange(16).reshape(4, 4)
    Image.fromarray(rgba).save(tmp_path / "alpha.png")

    with pytest.raises(ScanReadError, match=r"colour\.png: mask has 3 channels that differ"):
        read_mask(str(tmp_path / "colour.png"))
    with pytest.raises(ScanReadError, match=r"alpha\.png: mask has a varying alpha channel"):
        read_mask(str(tmp_path / "alpha.png"))


def test_palette_png_mask_gives_its_indices(tmp_path):
    labels = np.array([[0, 1], [2, 3]], np.uint8)
    Image.fromarray(labels).convert("P").save(tmp_path / "palette.png")

    np.testing.assert_array_equal(read_mask(str(tmp_path / "palette.png")).array[0], labels)
