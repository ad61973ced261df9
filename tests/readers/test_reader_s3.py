"""Every reader through s3:// URIs, against the loopback S3 server."""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
import pytest
import tifffile

from raysegment import storage
from raysegment.errors import ScanReadError
from raysegment.readers import format_of, read_mask, read_scan

pytestmark = pytest.mark.s3


def test_nifti_gz_from_s3(s3_bucket):
    data = np.random.default_rng(0).integers(0, 4, (5, 6, 7)).astype(np.int16)
    affine = np.diag([-1.25, 1.25, 3.0, 1.0])  # exact in the float32 header
    uri = f"{s3_bucket}/brats/case_001/seg.nii.gz"
    storage.write_bytes(uri, gzip.compress(nib.Nifti1Image(data, affine).to_bytes()))

    scan = read_scan(uri)
    mask = read_mask(uri)

    assert scan.source == uri
    np.testing.assert_array_equal(scan.array[0], data)
    np.testing.assert_array_equal(scan.affine, affine)
    assert scan.spacing == (1.25, 1.25, 3.0) and scan.orientation == "LAS"
    np.testing.assert_array_equal(mask.array[0], data)


def test_dicom_series_prefix_from_s3(s3_bucket, make_series):
    series = make_series(f"{s3_bucket}/dicom/patient7/series3", slices=4, step=3.0)

    scan = read_scan(series.folder)

    assert format_of(series.folder) == "dicom"
    np.testing.assert_array_equal(scan.array[0], series.volume)
    np.testing.assert_allclose(scan.affine[:3, 3], series.origin * [-1, -1, 1])
    assert scan.spacing == pytest.approx((0.5, 0.8, 3.0))
    assert scan.metadata["files"] == 4
    # A trailing slash names the same prefix.
    np.testing.assert_array_equal(read_scan(series.folder + "/").array, scan.array)


def test_bare_dicom_object_and_tiff_from_s3(s3_bucket, make_dicom):
    pixels = np.arange(12, dtype=np.int16).reshape(3, 4)
    storage.write_bytes(f"{s3_bucket}/raw/IM0001", make_dicom(pixels))
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels.astype(np.uint16))
    storage.write_bytes(f"{s3_bucket}/raw/slice.tif", buffer.getvalue())

    np.testing.assert_array_equal(read_scan(f"{s3_bucket}/raw/IM0001").array[0], pixels)
    np.testing.assert_array_equal(read_scan(f"{s3_bucket}/raw/slice.tif").array[0], pixels)


@pytest.mark.parametrize("key", ["nothing.nii.gz", "nothing.dcm", "nothing"])
def test_missing_object_is_a_scan_read_error(s3_bucket, key):
    with pytest.raises(ScanReadError) as info:
        read_scan(f"{s3_bucket}/{key}")
    assert info.value.uri == f"{s3_bucket}/{key}" and "no such" in info.value.problem


def test_truncated_nifti_on_s3(s3_bucket):
    full = gzip.compress(nib.Nifti1Image(np.ones((16, 16, 16), np.float32), np.eye(4)).to_bytes())
    storage.write_bytes(f"{s3_bucket}/cut.nii.gz", full[: len(full) // 2])

    with pytest.raises(ScanReadError, match=f"{s3_bucket}/cut.nii.gz: .*[Tt]runcated"):
        read_scan(f"{s3_bucket}/cut.nii.gz")
