"""A raysegment command, unchanged, runs on a separately started Ray cluster named by RAY_ADDRESS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from raysegment.ingest import ingest
from raysegment.models import ModelSpec, create_model, save_model
from raysegment.preprocess import PreprocessConfig
from raysegment.sample_data import make_sample_data

pytestmark = pytest.mark.slow


def _driver_logs(cluster) -> set[Path]:
    return set(cluster.temp_dir.glob("ray/session_*/logs/python-core-driver-*.log"))


def test_infer_command_runs_on_the_cluster(local_ray_cluster, tmp_path):
    make_sample_data(str(tmp_path / "data"), "lgg", patients=2, slices=2, size=32)
    ingest("lgg", str(tmp_path / "data"), str(tmp_path / "manifest.parquet"))
    preprocess = PreprocessConfig(steps=[{"name": "scale"}, {"name": "resize", "size": 32}])
    model = create_model("unet", in_channels=3, classes=1, base_channels=4, depth=2)
    save_model(str(tmp_path / "model"), model.eval(), ModelSpec("unet", 3, 1, {"base_channels": 4, "depth": 2}),
               preprocess=preprocess.model_dump(), class_names=preprocess.class_names)
    before = _driver_logs(local_ray_cluster)

    command = [sys.executable, "-m", "raysegment", "infer", "--model", str(tmp_path / "model"),
               "--manifest", str(tmp_path / "manifest.parquet"), "--out", str(tmp_path / "out"), "--json"]
    result = subprocess.run(command, env=local_ray_cluster.env, capture_output=True, text=True, timeout=900)

    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["cases"] == 4 and run["done"] == 4 and run["failed"] == 0
    # The command's driver joined the separate cluster: its log is in that cluster's session.
    assert _driver_logs(local_ray_cluster) - before
