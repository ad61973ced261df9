"""Manifest, checkpoint and outputs on S3 (loopback server): BraTS NIfTI volumes end to end; fail fast offline."""

from __future__ import annotations

import gzip
import json
import socket

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from raysegment import storage
from raysegment.cli import app
from raysegment.infer import InferConfig, case_key, run_inference
from raysegment.ingest import ingest
from raysegment.manifest import read_manifest
from raysegment.preprocess import PreprocessConfig, label_image, map_labels
from raysegment.sample_data import make_sample_data

pytestmark = [pytest.mark.s3, pytest.mark.slow]
REGIONS = {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}


def _nifti(uri: str):
    return nib.Nifti1Image.from_bytes(gzip.decompress(storage.read_bytes(uri)))


def test_brats_volumes_from_and_to_s3(s3_bucket, ray_session, checkpoint_factory):
    make_sample_data(f"{s3_bucket}/archive", "brats", patients=2, size=24, depth=6, validation=0, quirks=False)
    manifest_uri = f"{s3_bucket}/manifests/date=2026-02-03/manifest.parquet"
    ingest("brats", f"{s3_bucket}/archive", manifest_uri)
    manifest = read_manifest(manifest_uri)
    preprocess = PreprocessConfig(labels=REGIONS, steps=[{"name": "zscore"}, {"name": "resize", "size": 16}], orientation="RAS")
    model = checkpoint_factory(f"{s3_bucket}/models/brats", manifest, preprocess, in_channels=4, steps=10)
    out = f"{s3_bucket}/results/date=2026-02-03"
    result = run_inference(InferConfig(model=model, manifest=manifest_uri, out=out, batch_size=4, save_probabilities=True))
    assert (result.done, result.failed, result.slices) == (2, 0, 12)

    # The same run asked for one-hot stacks: one channel per region, the regions of the label maps.
    stacks = f"{s3_bucket}/results/one-hot"
    assert run_inference(InferConfig(model=model, manifest=manifest_uri, out=stacks, batch_size=4, one_hot=True)).done == 2
    for row in manifest.itertuples():
        source = _nifti(row.image_uris[0])
        mask = _nifti(f"{out}/masks/{case_key(row.case_id)}.nii.gz")
        np.testing.assert_allclose(mask.affine, source.affine)
        assert int(mask.header["qform_code"]) == int(source.header["qform_code"])
        assert int(mask.header["sform_code"]) == int(source.header["sform_code"])
        # By default one label map in BraTS's own values, on the source's grid.
        labels = np.asarray(mask.dataobj)
        assert mask.shape == source.shape and set(np.unique(labels)) <= {0, 1, 2, 4} and labels.any()
        stack = _nifti(f"{stacks}/masks/{case_key(row.case_id)}.nii.gz")
        assert stack.shape == source.shape + (3,) and stack.header.get_intent()[2] == "WT,TC,ET"
        regions = np.moveaxis(np.asarray(stack.dataobj), -1, 0)
        assert set(np.unique(regions)) <= {0, 1}
        prob = _nifti(f"{out}/probabilities/{case_key(row.case_id)}.nii.gz")
        np.testing.assert_array_equal(np.moveaxis(np.asarray(prob.dataobj) > 0.5, -1, 0), regions.astype(bool))
        np.testing.assert_array_equal(labels, label_image(regions, REGIONS))
        nested = (regions[2] <= regions[1]) & (regions[1] <= regions[0])  # ET inside TC inside WT
        np.testing.assert_array_equal(map_labels(labels, REGIONS)[:, nested], regions[:, nested])

    metrics = storage.read_table(f"{out}/metrics.parquet").to_pandas()
    assert len(metrics) == 6 and set(metrics["class"]) == set(REGIONS)
    assert metrics[["dice", "recall", "foreground_ml", "inference_seconds"]].notna().all().all()
    assert storage.read_table(f"{out}/errors.parquet").num_rows == 0
    assert json.loads(storage.read_bytes(f"{out}/run.json"))["done"] == 2


def test_unreachable_endpoint_is_one_line_and_prompt(monkeypatch, tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    result = CliRunner().invoke(app, ["infer", "--model", "s3://models/m", "--manifest", "s3://archive/m.parquet",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "s3://models/m" in lines[0] and "unreachable" in lines[0]
