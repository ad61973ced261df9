"""DICOM SEG output references its source but carries the case id instead of patient identity."""

from __future__ import annotations

import copy
import datetime
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
    assert seg.PatientBirthDate == "" and seg.StudyDate == "" and seg.PatientIdentityRemoved == "YES"
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


def _profile_attributes() -> dict[str, str]:
    """keyword -> VR of every attribute of an MR image's Patient, Study, Series and Clinical Trial
    modules that the confidentiality profile removes, empties or replaces.

    Module membership is highdicom's copy of the standard's module tables; the actions are the
    profile table (Retain UIDs kept aside: the SEG keeps UIDs on purpose).
    """
    from highdicom._standard_utils import get_iod_module_map, get_module_attribute_map
    from pydicom.datadict import dictionary_VR, keyword_for_tag

    from raysegment.writers.deidentify import profile_tags, retained_uid_tags

    tags = profile_tags()
    acted_on = {tuple(t) for name, group in tags.items() if name != "ALL_TAGS" for t in group} - set(map(tuple, retained_uid_tags()))
    profile = {keyword_for_tag((t[0] << 16) | t[1]) for t in acted_on if len(t) == 2}
    modules = [m["key"] for m in get_iod_module_map()["mr-image"] if m["ie"] in ("Patient", "Study", "Series")]
    attributes = get_module_attribute_map()
    keywords = {a["keyword"] for m in modules for a in attributes[m] if not a["path"]} & profile
    return {k: dictionary_VR(k) for k in sorted(keywords)}


def _identifying_value(vr: str, i: int):
    """A value of ``vr`` unique to attribute ``i``, findable in the file's bytes where it is text."""
    day = datetime.date(1931, 1, 1) + datetime.timedelta(days=i)
    texts = {"PN": f"Secret{i}^Person", "CS": f"SECRET{i}", "AS": f"{i % 900 + 10:03d}Y", "DA": day.strftime("%Y%m%d"),
             "TM": f"{i % 24:02d}{i % 60:02d}17", "DT": day.strftime("%Y%m%d") + "131517", "DS": f"{i}.25", "IS": str(7000 + i),
             "UR": f"http://secret{i}.example"}
    if vr == "SQ":
        from pydicom import Dataset

        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = f"S{i}", "99SECRET", f"SecretItem{i}"
        return [item]
    if vr in ("US", "UL", "SS", "SL", "FL", "FD"):
        return 4000 + i
    return texts.get(vr, f"Secret{i:04d}x")  # LO, SH, ST, LT, UT, UC


@pytest.fixture(scope="module")
def identifying_series(tmp_path_factory, lv_image) -> tuple[str, dict]:
    """A three-slice MR series whose profile attributes (:func:`_profile_attributes`) all hold identifying values."""
    from pydicom.uid import generate_uid

    folder = tmp_path_factory.mktemp("identifying")
    filled = {keyword: _identifying_value(vr, i) for i, (keyword, vr) in enumerate(_profile_attributes().items())}
    base = pydicom.dcmread(lv_image)
    for k in range(3):
        dataset = copy.deepcopy(base)
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.ImagePositionPatient = [-22.4, -22.4, 8.0 * k]
        dataset.InstanceNumber = k + 1
        for keyword, value in filled.items():
            setattr(dataset, keyword, value)
        dataset.save_as(str(folder / f"IM{k}.dcm"), enforce_file_format=True)
    return str(folder), filled


def test_seg_keeps_no_attribute_the_confidentiality_profile_removes(identifying_series):
    folder, filled = identifying_series
    # The attributes the issue found surviving the old hand-kept list are among those checked.
    assert {"AdditionalPatientHistory", "Occupation", "ConsultingPhysicianName", "AdmissionID", "ClinicalTrialSponsorName",
            "PatientName", "PatientID", "StudyDescription", "SeriesDescription"} <= set(filled)
    scan = read_scan(folder)
    mask = np.zeros((1, *scan.spatial_shape), np.uint8)
    mask[0, 8:20, 10:16, 1] = 1
    reference = Reference(case_id="case-042", affine=scan.affine, spacing=scan.spacing, metadata=scan.metadata,
                          source_uris=[folder], class_names=["ventricle"])
    data = WRITERS.get("dicom-seg")().encode(mask, reference)
    seg = pydicom.dcmread(io.BytesIO(data))
    survivors = {k: seg[k].value for k, v in filled.items() if k in seg and seg[k].value not in ("", None, []) and seg[k].value == v}
    assert not survivors
    texts = [v for v in filled.values() if isinstance(v, str) and any(c.isalpha() for c in v)]
    texts += [item.CodeMeaning for v in filled.values() if isinstance(v, list) for item in v]
    assert not [t for t in texts if t.encode() in data]
    assert seg.PatientID == "case-042" and seg.PatientIdentityRemoved == "YES"
    assert [c.CodeValue for c in seg.DeidentificationMethodCodeSequence] == ["113100", "113110"]
    # Retain UIDs: a viewer still lays the SEG over its source series.
    source = pydicom.dcmread(storage.join(folder, "IM1.dcm"))
    assert (seg.StudyInstanceUID, seg.FrameOfReferenceUID) == (source.StudyInstanceUID, source.FrameOfReferenceUID)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    import highdicom as hd

    frames = hd.seg.Segmentation.from_dataset(seg).get_pixels_by_source_instance(
        source_sop_instance_uids=[source.SOPInstanceUID], segment_numbers=[1])
    np.testing.assert_array_equal(frames[0, :, :, 0], mask[0, :, :, 1])
