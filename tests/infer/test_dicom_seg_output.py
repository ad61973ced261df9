"""DICOM input with --format dicom-seg: one SEG per case, referencing its source, named by case id only."""

from __future__ import annotations

import os

import pydicom
import pytest
from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.infer import case_key
from raysegment.ingest import ingest
from raysegment.preprocess import PreprocessConfig
from raysegment.sample_data import make_sample_data

pytestmark = pytest.mark.slow


def test_lv_cases_become_pseudonymous_segs(tmp_path, ray_session, checkpoint_factory):
    make_sample_data(str(tmp_path / "lv"), "lv", patients=2, slices=1, size=32, test_patients=0)
    manifest = ingest("lv", str(tmp_path / "lv"), str(tmp_path / "manifest.parquet")).manifest
    preprocess = PreprocessConfig(labels={"lv": "nonzero"}, steps=[{"name": "scale"}])
    model = checkpoint_factory(str(tmp_path / "model"), manifest, preprocess, in_channels=1, steps=5)
    result = CliRunner().invoke(app, ["infer", "--model", model, "--manifest", str(tmp_path / "manifest.parquet"),
                                      "--out", str(tmp_path / "out"), "--format", "dicom-seg"])
    assert result.exit_code == 0, result.output
    for row in manifest.itertuples():
        source = pydicom.dcmread(row.image_uris[0])
        seg = pydicom.dcmread(os.path.join(tmp_path, "out", "masks", f"{case_key(row.case_id)}.dcm"))
        assert seg.Modality == "SEG" and seg.PatientName.family_name == row.case_id and seg.PatientID == row.case_id
        assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
        assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert str(source.PatientName) not in str(seg) and seg.PatientBirthDate == ""
