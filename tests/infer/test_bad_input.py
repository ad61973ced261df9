"""Corrupt, truncated, missing and wrong-shaped scans become error rows; the rest completes (CLI, nightly config)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from raysegment import storage
from raysegment.cli import app
from raysegment.manifest import write_manifest

pytestmark = pytest.mark.slow


@pytest.fixture
def bad_manifest(lgg, tmp_path) -> tuple[str, dict[str, str]]:
    """3 good LGG cases and 4 bad ones; returns the manifest and, per bad case, the file it names."""
    from PIL import Image

    good = lgg["df"].head(3)
    real = good.iloc[0]["image_uris"][0]
    data = storage.read_bytes(real)
    files = {
        "missing": str(tmp_path / "gone.tif"),
        "corrupt": str(tmp_path / "corrupt.tif"),
        "truncated": str(tmp_path / "truncated.tif"),
        "wrong-shape": str(tmp_path / "gray.png"),
    }
    storage.write_bytes(files["corrupt"], b"II*\x00" + bytes(np.random.default_rng(0).integers(0, 255, 600, dtype=np.uint8)))
    storage.write_bytes(files["truncated"], data[: len(data) // 2])
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(files["wrong-shape"])  # 1 channel for a 3-channel model
    rows = [{"case_id": name, "patient_id": name, "level": "slice", "image_uris": [uri],
             "channels": ["gray"] if name == "wrong-shape" else list(good.iloc[0]["channels"]),
             "split": "unlabeled", "format": "tiff"} for name, uri in files.items()]
    uri = str(tmp_path / "manifests" / "date=2026-05-06" / "manifest.parquet")
    write_manifest(pd.concat([good, pd.DataFrame(rows)], ignore_index=True), uri)
    return uri, files


def test_bad_scans_fail_alone_and_are_listed(lgg, bad_manifest, tmp_path, ray_session):
    _, files = bad_manifest
    config = tmp_path / "nightly.yaml"
    config.write_text(f"model: {lgg['model']}\nmanifest: {tmp_path}/manifests/date={{date}}/manifest.parquet\n"
                      f"out: {tmp_path}/results/date={{date}}\nbatch_size: 2\n")
    runner = CliRunner()
    result = runner.invoke(app, ["infer", "--config", str(config), "--date", "2026-05-06"])
    assert result.exit_code == 3, result.output
    out = tmp_path / "results" / "date=2026-05-06"
    errors = pd.read_parquet(out / "errors.parquet").set_index("case_id")
    assert sorted(errors.index) == sorted(files)
    for name, uri in files.items():
        assert uri in errors.loc[name, "error"] and errors.loc[name, "stage"] == "read"
    assert "no such file" in errors.loc["missing", "error"]
    assert "the model takes 3" in errors.loc["wrong-shape", "error"]
    assert len(os.listdir(out / "masks")) == 3
    assert "failed" in result.output and "4" in result.output
    for case in files:
        assert f"failed {case} (read)" in " ".join(result.output.split())

    again = runner.invoke(app, ["infer", "--config", str(config), "--date", "2026-05-06", "--json"])
    assert again.exit_code == 3
    assert '"skipped": 3' in again.output and '"failed": 4' in again.output
