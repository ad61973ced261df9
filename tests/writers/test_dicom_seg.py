"""DICOM SEG output references its source but carries the case id instead of patient identity."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from raysegment import storage
from raysegment.readers import read_scan
from raysegment.sample_data import make_sample_data
from raysegment.writers import WRITERS, Reference


@pytest.fixture(scope="module")
def lv_image(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("lv")
    make_sample_data(str(root), "lv", patients=1, slices=1, size=32, test_patients=0)
    uri = next(u for u in storage.list_files(str(root)) if u.endswith(".dcm"))
    dataset = pydicom.dcmread(uri)
    dataset.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.77"  # mandatory in real MR images; the sample omits it
    dataset.save_as(uri)
    return uri


def test_seg_references_source_and_hides_identity(lv_image):
    source = pydicom.dcmread(lv_image)
    assert str(source.PatientName).startswith("Synthetic") and source.PatientBirthDate  # the fixture is identifying
    scan = read_scan(lv_image)
    mask = np.zeros((1, *scan.spatial_shape), np.uint8)
    mask[0, 8:20, 10:16] = 1
    reference = Reference(case_id="case-007", affine=scan.affine, spacing=scan.spacing, metadata=scan.metadata,
                          source_uris=[lv_image], class_names=["ventricle"])
    data = WRITERS.get("dicom-seg")().encode(mask, reference)
    seg = pydicom.dcmread(io.BytesIO(data))
    assert seg.Modality == "SEG" and seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.PatientName.family_name == "case-007" and seg.PatientID == "case-007"
    assert seg.PatientBirthDate == "" and seg.StudyDate == ""
    for value in (str(source.PatientName), source.PatientID, source.PatientBirthDate):
        assert value.encode() not in data
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == source.SeriesInstanceUID
    assert referenced.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    import highdicom as hd

    frames = hd.seg.Segmentation.from_dataset(seg).get_pixels_by_source_instance(
        source_sop_instance_uids=[source.SOPInstanceUID], segment_numbers=[1])
    np.testing.assert_array_equal(frames[0, :, :, 0], mask[0])


def test_source_without_frame_of_reference_is_a_clear_error(tmp_path, lv_image):
    from raysegment.errors import ScanReadError

    dataset = pydicom.dcmread(lv_image)
    del dataset.FrameOfReferenceUID
    uri = str(tmp_path / "no_for.dcm")
    dataset.save_as(uri)
    scan = read_scan(uri)
    reference = Reference(case_id="c", affine=scan.affine, spacing=scan.spacing, source_uris=[uri], class_names=["lv"])
    with pytest.raises(ScanReadError, match="no FrameOfReferenceUID"):
        WRITERS.get("dicom-seg")().encode(np.zeros((1, *scan.spatial_shape), np.uint8), reference)
