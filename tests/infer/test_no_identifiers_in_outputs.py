"""Bulk inference on identifying DICOM headers: no output file and no console line carries them."""

from __future__ import annotations

import os

import pydicom
import pytest
from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.ingest import ingest
from raysegment.preprocess import PreprocessConfig
from raysegment.sample_data import make_sample_data

pytestmark = pytest.mark.slow

#: Header values unlike anything in the file names or case ids, so a hit can only come from a header.
CANARIES = {"PatientName": "Canary^Leaky", "PatientID": "CANARY-PID-7731", "OtherPatientNames": "Canary^Other",
            "AdditionalPatientHistory": "CANARY history", "InstitutionName": "Canary General Hospital"}


def test_outputs_carry_no_header_identifiers(tmp_path, ray_session, checkpoint_factory):
    make_sample_data(str(tmp_path / "lv"), "lv", patients=2, slices=1, size=32, test_patients=0)
    manifest = ingest("lv", str(tmp_path / "lv"), str(tmp_path / "manifest.parquet")).manifest
    for row in manifest.itertuples():
        dataset = pydicom.dcmread(row.image_uris[0])
        for keyword, value in CANARIES.items():
            setattr(dataset, keyword, value)
        dataset.save_as(row.image_uris[0])
    # One case whose file lost its preamble: its error row must not quote the header either.
    broken = manifest.iloc[0].image_uris[0]
    with open(broken, "rb") as f:
        data = f.read()
    with open(broken, "wb") as f:
        f.write(data[132:])
    preprocess = PreprocessConfig(labels={"lv": "nonzero"}, steps=[{"name": "scale"}])
    model = checkpoint_factory(str(tmp_path / "model"), manifest.iloc[1:], preprocess, in_channels=1, steps=2)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["infer", "--model", model, "--manifest", str(tmp_path / "manifest.parquet"),
                                      "--out", str(out), "--format", "dicom-seg"])
    assert result.exit_code == 3, result.output  # the broken case failed, the other completed
    assert os.path.exists(out / "errors.parquet") and os.path.exists(out / "metrics.parquet")
    written = [os.path.join(folder, name) for folder, _, names in os.walk(out) for name in names]
    assert any(name.endswith(".dcm") for name in written)
    texts = [value.encode() for value in CANARIES.values()] + [b"Canary", b"CANARY"]
    for path in written:
        with open(path, "rb") as f:
            content = f.read()
        assert not [t for t in texts if t in content], path
    assert "anary" not in result.output
