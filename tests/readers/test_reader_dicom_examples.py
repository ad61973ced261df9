"""DICOM reader on the real example files shipped inside pydicom, compressed ones included."""

from __future__ import annotations

import numpy as np
import pydicom.data as pydicom_data
import pytest

from raysegment.errors import ScanReadError
from raysegment.readers import read_scan


def example(name: str) -> str:
    return pydicom_data.get_testdata_file(name)


@pytest.fixture(scope="module")
def mr_small():
    return read_scan(example("MR_small.dcm"))


def test_mr_small_geometry_matches_its_header(mr_small):
    import pydicom

    ds = pydicom.dcmread(example("MR_small.dcm"))
    assert mr_small.array.shape == (1, 64, 64)
    np.testing.assert_array_equal(mr_small.array[0], ds.pixel_array)
    assert mr_small.spacing == (0.3125, 0.3125)
    # Axial, identity orientation: LPS origin (-83.9063, -91.2, 6.6406) becomes RAS (83.9063, 91.2, 6.6406).
    np.testing.assert_allclose(mr_small.affine[:3, 3], [83.9063, 91.2, 6.6406])
    np.testing.assert_allclose(mr_small.affine[:3, :2], [[0, -0.3125], [-0.3125, 0], [0, 0]])
    assert mr_small.orientation == "PLS"
    assert mr_small.metadata["modality"] == "MR"
    assert mr_small.metadata["bits_stored"] == 16


@pytest.mark.parametrize(
    "name, syntax",
    [
        ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),
        ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
        ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90"),
        ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),
        ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),
    ],
)
def test_lossless_variants_decode_to_the_uncompressed_pixels(mr_small, name, syntax):
    scan = read_scan(example(name))

    assert scan.metadata["transfer_syntax"] == syntax
    assert scan.array.dtype.isnative
    np.testing.assert_array_equal(scan.array, mr_small.array)
    np.testing.assert_allclose(scan.affine, mr_small.affine)


def test_jpeg_baseline_is_close_to_the_lossless_copy_of_the_same_image():
    lossless = read_scan(example("SC_rgb_rle.dcm"))
    baseline = read_scan(example("SC_rgb_jpeg_dcmtk.dcm"))
    jpeg_lossless = read_scan(example("SC_rgb_jpeg_gdcm.dcm"))

    assert baseline.metadata["transfer_syntax"] == "1.2.840.10008.1.2.4.50"
    assert baseline.array.shape == lossless.array.shape == (3, 100, 100)
    assert baseline.channels == ("R", "G", "B")
    error = np.abs(baseline.array.astype(int) - lossless.array.astype(int))
    assert error.mean() < 2 and error.max() <= 16  # lossy, but the same picture (colours are 0..255)
    np.testing.assert_array_equal(jpeg_lossless.array, lossless.array)


def test_multiframe_example_is_a_volume():
    scan = read_scan(example("SC_rgb_rle_2frame.dcm"))
    single = read_scan(example("SC_rgb_rle.dcm"))

    assert scan.array.shape == (3, 100, 100, 2)
    np.testing.assert_array_equal(scan.array[..., 0], single.array)


def test_rescaled_ct_is_float32_hounsfield():
    import pydicom

    ds = pydicom.dcmread(example("CT_small.dcm"))
    scan = read_scan(example("CT_small.dcm"))

    assert scan.array.dtype == np.float32
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(scan.array[0], expected)


# pydicom warns when a file ends inside encapsulated pixel data, then drops the element.
@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm"])
@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_truncated_copies_raise(tmp_path, name, keep):
    data = open(example(name), "rb").read()
    cut = tmp_path / f"cut_{name}"
    cut.write_bytes(data[: int(len(data) * keep)])

    with pytest.raises(ScanReadError) as info:
        read_scan(str(cut))
    assert info.value.uri == str(cut)
    assert info.value.problem.startswith(("truncated DICOM pixel data", "truncated DICOM file"))


def test_dicom_without_an_image_is_an_error():
    import pydicom

    from raysegment.readers.dicom import DicomReader

    report = pydicom.data.get_testdata_file("rtplan.dcm")  # an RT plan: DICOM, but no pixels
    with pytest.raises(ScanReadError, match="holds no image"):
        DicomReader().read(report)


def test_pydicoms_own_truncated_example_raises():
    with pytest.raises(ScanReadError, match="truncated DICOM pixel data: 8130 bytes, the header needs 8192"):
        read_scan(example("MR_truncated.dcm"))
