"""NIfTI reader on files nibabel writes, and on nibabel's own example files."""

from __future__ import annotations

import gzip
import json
import os

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path

from raysegment.errors import ScanReadError
from raysegment.readers import read_scan

# An oblique, anisotropic affine: nothing about it can come out right by accident.
AFFINE = np.array(
    [
        [-0.9, 0.1, 0.0, 90.0],
        [0.05, 1.1, -0.2, -120.5],
        [0.0, 0.15, 2.5, -60.25],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


# The scanner's rigid frame, kept in the qform while the sform holds AFFINE.
QFORM = np.array([[-1.0, 0.0, 0.0, 91.0], [0.0, 1.0, 0.0, -121.0], [0.0, 0.0, 2.5, -60.0], [0.0, 0.0, 0.0, 1.0]])


def _image(data: np.ndarray, image_type=nib.Nifti1Image) -> nib.Nifti1Image:
    image = image_type(data, AFFINE)
    image.set_qform(QFORM, code="scanner")
    image.set_sform(AFFINE, code="aligned")
    image.header.set_xyzt_units("mm", "sec")
    image.header["descrip"] = b"subject Jane Doe scanned 2020-01-01"
    image.header["aux_file"] = b"jane_doe.txt"
    if "db_name" in image.header:  # NIfTI-1 only
        image.header["db_name"] = b"hospital-db"
    return image


@pytest.mark.parametrize("name", ["vol.nii", "vol.nii.gz"])
@pytest.mark.parametrize("image_type, version", [(nib.Nifti1Image, 1), (nib.Nifti2Image, 2)])
def test_3d_volume_keeps_voxels_affine_and_header_geometry(tmp_path, name, image_type, version):
    data = np.random.default_rng(0).integers(-100, 3000, (5, 6, 7)).astype(np.int16)
    image = _image(data, image_type)
    nib.save(image, tmp_path / name)
    reference = nib.load(tmp_path / name)

    scan = read_scan(str(tmp_path / name))

    assert scan.array.shape == (1, 5, 6, 7) and scan.array.dtype == np.int16
    np.testing.assert_array_equal(scan.array[0], data)
    np.testing.assert_array_equal(scan.affine, reference.affine)
    np.testing.assert_allclose(scan.spacing, reference.header.get_zooms()[:3])
    assert scan.orientation == "".join(nib.aff2axcodes(reference.affine)) == "LAS"
    assert scan.channels == ("gray",)
    meta = scan.metadata
    assert meta["nifti_version"] == version
    assert (meta["qform_code"], meta["sform_code"]) == (1, 2)
    assert (meta["xyz_units"], meta["t_units"]) == ("mm", "sec")
    np.testing.assert_allclose(meta["sform"], AFFINE, atol=1e-6)
    np.testing.assert_allclose(meta["qform"], QFORM, atol=1e-6)


def test_free_text_header_fields_stay_out_of_metadata(tmp_path):
    nib.save(_image(np.zeros((2, 2, 2), np.uint8)), tmp_path / "m.nii")

    scan = read_scan(str(tmp_path / "m.nii"))

    text = json.dumps(scan.metadata) + json.dumps(scan.summary())
    for secret in ("Jane", "hospital-db", "jane_doe"):
        assert secret not in text
    assert not {"descrip", "db_name", "aux_file"} & set(scan.metadata)


def test_4d_puts_the_fourth_axis_first_as_channels(tmp_path):
    data = np.random.default_rng(1).random((4, 5, 6, 3)).astype(np.float32)
    nib.save(_image(data), tmp_path / "t.nii.gz")

    scan = read_scan(str(tmp_path / "t.nii.gz"))

    assert scan.array.shape == (3, 4, 5, 6)
    np.testing.assert_array_equal(scan.array, np.moveaxis(data, -1, 0))
    assert scan.channels == ("t0", "t1", "t2")
    assert len(scan.spacing) == 3


def test_channel_names_from_intent_name(tmp_path):
    image = _image(np.zeros((3, 3, 2, 4), np.int16))
    image.header.set_intent("none", name="flair,t1,t1ce,t2")
    nib.save(image, tmp_path / "brats.nii.gz")

    assert read_scan(str(tmp_path / "brats.nii.gz")).channels == ("flair", "t1", "t1ce", "t2")


def test_scaled_integers_come_back_scaled(tmp_path):
    values = np.linspace(-3.0, 7.0, 24, dtype=np.float32).reshape(2, 3, 4)
    image = _image(values)
    image.set_data_dtype(np.int16)  # nibabel picks scl_slope / scl_inter to store floats as int16
    nib.save(image, tmp_path / "s.nii")
    reference = nib.load(tmp_path / "s.nii")

    scan = read_scan(str(tmp_path / "s.nii"))

    slope, inter = reference.dataobj.slope, reference.dataobj.inter
    assert slope != 1.0
    np.testing.assert_array_equal(scan.array[0], reference.get_fdata(dtype=scan.array.dtype))
    np.testing.assert_allclose(scan.array[0], values, atol=abs(slope))
    assert scan.metadata["dtype_on_disk"] == "int16"
    assert (scan.metadata["scl_slope"], scan.metadata["scl_inter"]) == pytest.approx((slope, inter))


def test_rgb24_datatype_becomes_three_channels(tmp_path):
    rgb = np.zeros((2, 3, 1), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"], rgb["G"], rgb["B"] = 10, 20, 30
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), tmp_path / "rgb.nii")

    scan = read_scan(str(tmp_path / "rgb.nii"))

    assert scan.channels == ("R", "G", "B")
    assert scan.array[:, 0, 0, 0].tolist() == [10, 20, 30]


@pytest.mark.parametrize("name, image_type, shape", [
    ("example4d.nii.gz", nib.Nifti1Image, (2, 128, 96, 24)),
    ("example_nifti2.nii.gz", nib.Nifti2Image, (2, 32, 20, 12)),
    ("anatomical.nii", nib.Nifti1Image, (1, 33, 41, 25)),  # big-endian int16 on disk
])
def test_nibabel_example_files(name, image_type, shape):
    path = os.path.join(data_path, name)
    reference = nib.load(path)

    scan = read_scan(path)

    assert isinstance(reference, image_type)
    assert scan.array.shape == shape and scan.array.dtype.isnative
    voxels = np.asarray(reference.dataobj)
    np.testing.assert_array_equal(scan.array, voxels[None] if voxels.ndim == 3 else np.moveaxis(voxels, -1, 0))
    np.testing.assert_array_equal(scan.affine, reference.affine)
    assert scan.orientation == "".join(nib.aff2axcodes(reference.affine))


def test_truncated_gzip_raises_naming_the_file(tmp_path):
    nib.save(_image(np.ones((16, 16, 16), np.float32)), tmp_path / "full.nii.gz")
    data = (tmp_path / "full.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])

    with pytest.raises(ScanReadError) as info:
        read_scan(str(tmp_path / "cut.nii.gz"))
    assert str(info.value).startswith(f"{tmp_path / 'cut.nii.gz'}: ")
    assert "truncated" in info.value.problem.lower()


@pytest.mark.parametrize("name", ["short.nii", "short.nii.gz"])
def test_complete_stream_with_missing_voxels_raises(tmp_path, name):
    """A whole gzip stream (or plain file) whose voxel data stops early is caught by the size check."""
    raw = _image(np.ones((8, 8, 8), np.float32)).to_bytes()
    short = raw[:-100]
    (tmp_path / name).write_bytes(gzip.compress(short) if name.endswith(".gz") else short)

    with pytest.raises(ScanReadError, match=f"{name}: truncated NIfTI: {len(short)} bytes, the header needs {len(raw)}"):
        read_scan(str(tmp_path / name))


def test_bad_header_raises(tmp_path):
    (tmp_path / "junk.nii").write_bytes(b"\x5c\x01\x00\x00" + b"\x00" * 400)  # sizeof_hdr 348, no magic

    with pytest.raises(ScanReadError, match="junk.nii: not a single-file NIfTI"):
        read_scan(str(tmp_path / "junk.nii"))
