"""TIFF and PNG masks: packed label images that the mask reader reads back losslessly."""

from __future__ import annotations

import numpy as np
import pytest

from raysegment import storage
from raysegment.errors import ConfigError
from raysegment.readers import read_mask, read_scan
from raysegment.scan import affine_2d
from raysegment.writers import WRITERS, Reference, output_format, pack_labels

REF = Reference(case_id="c", affine=affine_2d(), spacing=(1.0, 1.0), class_names=["a", "b", "c"])


def _random_mask(shape, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) > 0.6).astype(np.uint8)


def test_pack_labels_sets_one_bit_per_class():
    mask = _random_mask((3, 8, 8))
    packed = pack_labels(mask)
    for k in range(3):
        np.testing.assert_array_equal((packed >> k) & 1, mask[k])
    np.testing.assert_array_equal(pack_labels(mask[:1]), mask[0] * 255)  # one class: 0/255 like LGG masks


@pytest.mark.parametrize("name", ["tiff", "png"])
def test_2d_masks_round_trip(tmp_path, name):
    writer = WRITERS.get(name)()
    for classes in (1, 3):
        mask = _random_mask((classes, 16, 12), seed=classes)
        uri = str(tmp_path / f"m{classes}{writer.suffix}")
        storage.write_bytes(uri, writer.encode(mask, REF))
        np.testing.assert_array_equal(read_mask(uri).array[0], pack_labels(mask))


def test_tiff_volume_pages_are_slices(tmp_path):
    mask = _random_mask((1, 16, 12, 5))
    uri = str(tmp_path / "v.tif")
    storage.write_bytes(uri, WRITERS.get("tiff")().encode(mask, REF))
    np.testing.assert_array_equal(read_mask(uri).array[0], pack_labels(mask))


def test_tiff_probabilities_keep_floats(tmp_path):
    prob = np.random.default_rng(1).random((2, 16, 12)).astype(np.float32)
    uri = str(tmp_path / "p.tif")
    storage.write_bytes(uri, WRITERS.get("tiff")().encode(prob, REF))
    np.testing.assert_array_equal(read_scan(uri).array, prob)


def test_png_refuses_volumes():
    with pytest.raises(ConfigError, match="PNG holds 2D slices"):
        WRITERS.get("png")().encode(np.zeros((1, 4, 4, 3), np.uint8), REF)


def test_auto_format_follows_the_input():
    assert [output_format("auto", f) for f in ("nifti", "tiff", "png", "dicom")] == ["nifti", "tiff", "png", "nifti"]
    assert output_format("dicom-seg", "dicom") == "dicom-seg"


@pytest.mark.parametrize("name, shape", [("tiff", (16, 12)), ("tiff", (16, 12, 5)), ("png", (16, 12)), ("nifti", (16, 12, 5))])
@pytest.mark.parametrize("values", [[0, 1, 2, 4], [0, 7, 300]])
def test_label_maps_keep_the_source_values(tmp_path, name, shape, values):
    writer = WRITERS.get(name)()
    labels = np.random.default_rng(2).choice(values, size=shape).astype(np.uint16 if max(values) > 255 else np.uint8)
    uri = str(tmp_path / f"labels{writer.suffix}")
    reference = Reference(case_id="c", affine=np.diag([1.0, 1.0, 2.0, 1.0]), spacing=(1.0,) * len(shape))
    storage.write_bytes(uri, writer.encode_label_map(labels, reference))
    np.testing.assert_array_equal(read_mask(uri).array[0], labels)


def test_dicom_seg_keeps_one_segment_per_class():
    writer = WRITERS.get("dicom-seg")()
    assert not writer.takes_label_map
    with pytest.raises(NotImplementedError, match="one segment per class"):
        writer.encode_label_map(np.zeros((4, 4), np.uint8), REF)
