"""DICOM reader on files written by pydicom: single slices, shuffled series, multi-frame, errors."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from raysegment import storage
from raysegment.errors import ScanReadError
from raysegment.readers import read_scan

# nibabel warns on import of its DICOM wrappers; they serve here only as an independent reference.
pytestmark = pytest.mark.filterwarnings("ignore:The DICOM readers are highly experimental")

OBLIQUE = (0.8660254, 0.5, 0.0, 0.0, 0.0, -1.0)  # rows tilted 30 degrees in the axial plane, columns down


def _nibabel_lps_affine(data: bytes) -> np.ndarray:
    """nibabel's own geometry for one slice: voxel (row, col) -> LPS mm."""
    import pydicom
    from nibabel.nicom.dicomwrappers import wrapper_from_data

    return wrapper_from_data(pydicom.dcmread(io.BytesIO(data))).affine


def test_single_slice_pixels_spacing_and_affine_match_nibabel(tmp_path, make_dicom):
    pixels = np.arange(6 * 7, dtype=np.int16).reshape(6, 7) - 20
    data = make_dicom(pixels, orientation=OBLIQUE, position=(12.5, -30.0, 44.0), spacing=(0.7, 0.9))
    (tmp_path / "slice.dcm").write_bytes(data)

    scan = read_scan(str(tmp_path / "slice.dcm"))

    assert scan.array.shape == (1, 6, 7) and scan.array.dtype == np.int16
    np.testing.assert_array_equal(scan.array[0], pixels)
    assert scan.spacing == (0.7, 0.9)
    assert scan.channels == ("gray",)
    reference = np.diag([-1.0, -1.0, 1.0, 1.0]) @ _nibabel_lps_affine(data)
    np.testing.assert_allclose(scan.affine[:, [0, 1, 3]], reference[:, [0, 1, 3]], atol=1e-5)
    # The slice's third column is the unit normal X x Y, in RAS.
    normal = np.cross(OBLIQUE[:3], OBLIQUE[3:]) * [-1, -1, 1]
    np.testing.assert_allclose(scan.affine[:3, 2], normal, atol=1e-6)


def test_shuffled_series_is_sorted_by_position_with_hand_derived_affine(tmp_path, make_series):
    series = make_series(str(tmp_path / "series"), slices=5, spacing=(0.5, 0.8), step=2.5, origin=(-10.0, 20.0, 5.0))

    scan = read_scan(series.folder)

    assert scan.array.shape == (1, 6, 7, 5)
    np.testing.assert_array_equal(scan.array[0], series.volume)
    assert scan.spacing == pytest.approx((0.5, 0.8, 2.5))
    # Axial slices: rows go posterior (+y LPS), columns go left (+x LPS), slices go superior.
    expected = np.array(
        [
            [0.0, -0.8, 0.0, 10.0],
            [-0.5, 0.0, 0.0, -20.0],
            [0.0, 0.0, 2.5, 5.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    np.testing.assert_allclose(scan.affine, expected, atol=1e-6)
    assert scan.orientation == "PLS"
    assert scan.metadata["files"] == 5
    np.testing.assert_array_equal(read_scan(series.folder, format="dicom").array, scan.array)


def test_oblique_series_affine_matches_nibabel_slice_by_slice(tmp_path, make_series):
    series = make_series(str(tmp_path / "oblique"), slices=4, orientation=OBLIQUE, origin=(3.0, -7.0, 11.0), step=1.75)

    scan = read_scan(series.folder)

    for k, uri in enumerate(series.files):
        reference = np.diag([-1.0, -1.0, 1.0, 1.0]) @ _nibabel_lps_affine(storage.read_bytes(uri))
        np.testing.assert_allclose(scan.affine[:3, :2], reference[:3, :2], atol=1e-5)
        np.testing.assert_allclose((scan.affine @ [0.0, 0.0, k, 1.0])[:3], reference[:3, 3], atol=1e-4)
    normal_ras = np.cross(OBLIQUE[:3], OBLIQUE[3:]) * [-1, -1, 1]
    np.testing.assert_allclose(scan.affine[:3, 2], 1.75 * normal_ras, atol=1e-5)


def test_rescale_slope_and_intercept_give_float32(tmp_path, make_series):
    series = make_series(str(tmp_path / "ct"), slices=3, slope=2.5, intercept=-1024)

    scan = read_scan(series.folder)

    assert scan.array.dtype == np.float32
    np.testing.assert_allclose(scan.array[0], series.volume.astype(np.float64) * 2.5 - 1024)
    assert scan.metadata["rescaled"] is True
    assert scan.metadata["rescale_slope"] == 2.5 and scan.metadata["rescale_intercept"] == -1024


def test_series_without_positions_is_ordered_by_instance_number(tmp_path, make_dicom):
    rng = np.random.default_rng(3)
    slices = [rng.integers(0, 100, (4, 4)).astype(np.int16) for _ in range(4)]
    for instance in (3, 1, 4, 2):
        data = make_dicom(slices[instance - 1], position=None, instance=instance, thickness=3.0)
        (tmp_path / f"file{instance * 7 % 5}.dcm").write_bytes(data)

    scan = read_scan(str(tmp_path))

    np.testing.assert_array_equal(scan.array[0], np.stack(slices, axis=-1))
    assert scan.spacing[2] == 3.0
    assert scan.metadata["has_geometry"] is False


def test_multiframe_file_is_a_volume_sorted_like_a_series(tmp_path, make_series):
    """An enhanced multi-frame file with per-frame positions, frames stored in reverse order."""
    from pydicom import dcmwrite
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, generate_uid

    series = make_series(str(tmp_path / "reference"), slices=3, orientation=OBLIQUE, spacing=(0.6, 0.6), step=2.0)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = EnhancedMRImageStorage, meta.MediaStorageSOPInstanceUID, "MR"
    rows, cols, count = series.volume.shape
    ds.Rows, ds.Columns, ds.NumberOfFrames, ds.SamplesPerPixel = rows, cols, count, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    shared.PlaneOrientationSequence = Sequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = list(OBLIQUE)
    shared.PixelMeasuresSequence = Sequence([Dataset()])
    shared.PixelMeasuresSequence[0].PixelSpacing = [0.6, 0.6]
    shared.PixelMeasuresSequence[0].SliceThickness = 2.0
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    normal = np.cross(OBLIQUE[:3], OBLIQUE[3:])
    per_frame = []
    for k in reversed(range(count)):
        item = Dataset()
        item.PlanePositionSequence = Sequence([Dataset()])
        item.PlanePositionSequence[0].ImagePositionPatient = [float(v) for v in series.origin + 2.0 * k * normal]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.ascontiguousarray(np.moveaxis(series.volume[..., ::-1], -1, 0)).astype("<i2").tobytes()
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    (tmp_path / "enhanced.dcm").write_bytes(buffer.getvalue())

    scan = read_scan(str(tmp_path / "enhanced.dcm"))
    reference = read_scan(series.folder)

    np.testing.assert_array_equal(scan.array, reference.array)
    np.testing.assert_allclose(scan.affine, reference.affine, atol=1e-5)


def test_patient_identifiers_never_reach_metadata(tmp_path, make_dicom, make_series, patient_fields):
    (tmp_path / "one.dcm").write_bytes(make_dicom(np.zeros((4, 4), np.int16)))
    series = make_series(str(tmp_path / "series"), slices=2)

    for scan in (read_scan(str(tmp_path / "one.dcm")), read_scan(series.folder)):
        text = json.dumps(scan.metadata, default=str) + json.dumps(scan.summary(), default=str)
        for value in patient_fields.values():
            assert value not in text and value.replace("^", " ") not in text
        assert not any("patient" in key.lower() or "uid" in key.lower() for key in scan.metadata)
        assert scan.metadata["modality"] == "MR" and scan.metadata["transfer_syntax"] == "1.2.840.10008.1.2.1"


def test_truncated_slice_raises_instead_of_zero_filling(tmp_path, make_dicom):
    data = make_dicom(np.ones((32, 32), np.int16))
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 300])

    with pytest.raises(ScanReadError, match=r"cut\.dcm: truncated DICOM pixel data: 1748 bytes, the header needs 2048"):
        read_scan(str(tmp_path / "cut.dcm"))


def test_truncated_file_in_a_series_names_that_file(tmp_path, make_series):
    series = make_series(str(tmp_path / "series"), slices=4)
    broken = series.files[2]
    data = storage.read_bytes(broken)
    storage.write_bytes(broken, data[:-40])

    with pytest.raises(ScanReadError) as info:
        read_scan(series.folder)
    assert info.value.uri == broken and "truncated" in info.value.problem


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"orientation": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)}, "mixed slice orientations"),
        ({"series_uid": "1.2.3.999"}, "2 DICOM series"),
        ({"spacing": (0.5, 0.9)}, "mixed pixel spacings"),
    ],
)
def test_inconsistent_series_is_an_error(tmp_path, make_series, make_dicom, change, problem):
    series = make_series(str(tmp_path / "series"), slices=3)
    odd = make_dicom(np.zeros((6, 7), np.int16), **{"position": (0.0, 0.0, 100.0), "spacing": series.spacing, **change})
    (tmp_path / "series" / "odd.dcm").write_bytes(odd)

    with pytest.raises(ScanReadError, match=problem) as info:
        read_scan(series.folder)
    assert info.value.uri.endswith("series")


def test_mixed_shapes_are_an_error(tmp_path, make_series, make_dicom):
    series = make_series(str(tmp_path / "shapes"), slices=3)
    big = make_dicom(np.zeros((8, 8), np.int16), position=(0, 0, 99.0), spacing=series.spacing)
    (tmp_path / "shapes" / "big.dcm").write_bytes(big)

    with pytest.raises(ScanReadError, match="mixed image shapes"):
        read_scan(series.folder)


def test_missing_inner_slice_is_an_error_missing_end_slice_is_not(tmp_path, make_series):
    gappy = make_series(str(tmp_path / "gap"), slices=4, step=2.0)
    storage.delete(gappy.files[1])
    with pytest.raises(ScanReadError, match=r"uneven slice spacing \(2 to 4 mm\)"):
        read_scan(gappy.folder)

    shorter = make_series(str(tmp_path / "end"), slices=4, step=2.0)
    storage.delete(shorter.files[3])
    scan = read_scan(shorter.folder)
    np.testing.assert_array_equal(scan.array[0], shorter.volume[..., :3])
    assert scan.spacing[2] == pytest.approx(2.0)


def test_folder_without_dicom_images_and_non_dicom_neighbours(tmp_path, make_series):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ScanReadError, match="no DICOM images among the 1 files"):
        read_scan(str(tmp_path / "empty"))

    series = make_series(str(tmp_path / "series"), slices=3)
    (tmp_path / "series" / "README").write_text("exported by a scanner")
    assert read_scan(series.folder).num_slices == 3
