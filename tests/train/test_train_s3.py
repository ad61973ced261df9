"""A run whose ``--out`` is ``s3://``: every report lands on S3, the best model loads from there, a re-run resumes."""

from __future__ import annotations

import json

import pytest
import torch
from fixtures_data import assert_resumed, tiny_config

from raysegment import storage
from raysegment.models import load_model
from raysegment.train import apply_overrides, load_config, train


def _summary(out: str) -> dict:
    return json.loads(storage.read_bytes(f"{out}/summary.json"))


@pytest.mark.slow
@pytest.mark.s3
def test_run_on_s3_writes_every_report_there_and_resumes(ray_session, s3_bucket, lgg_manifest, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a URI taken for a local path would leave an "s3:" folder here
    out = f"{s3_bucket}/run"
    config = tiny_config(lgg_manifest, out, **{"optim.epochs": 1})
    first = train(config)

    assert (first.run_uri, first.best_model_uri) == (out, f"{out}/best")
    files = {uri.removeprefix(f"{out}/") for uri in storage.list_files(out)}
    assert {"best/model.json", "best/model.pt", "history.parquet", "train_curves.png", "summary.json", "config.yaml"} <= files
    assert any(name.startswith("checkpoints/epoch_0001/") for name in files)
    assert any(name.startswith("tensorboard/") for name in files)
    model, meta = load_model(f"{out}/best")
    assert meta["model"]["name"] == "unet" and meta["epoch"] == 1 and meta["run_uri"] == out
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    history = storage.read_table(f"{out}/history.parquet").to_pandas()
    assert list(history["epoch"]) == [1] and history["val_dice"].between(0, 1).all()
    assert storage.read_bytes(f"{out}/train_curves.png")[:8] == b"\x89PNG\r\n\x1a\n"
    summary = _summary(out)
    assert summary["run_uri"] == out and summary["best_model_uri"] == f"{out}/best" and summary["epochs_run"] == 1
    assert load_config(f"{out}/config.yaml") == config

    resumed = train(apply_overrides(config, {"optim.epochs": 2}))  # the same command with --epochs 2
    history = storage.read_table(f"{out}/history.parquet").to_pandas()
    assert_resumed(first.history, history, epochs=2)
    assert _summary(out)["epochs_run"] == 2 and resumed.summary["epochs_run"] == 2
    assert {"checkpoints/epoch_0001", "checkpoints/epoch_0002"} <= {storage.parent(u).removeprefix(f"{out}/")
                                                                     for u in storage.list_files(f"{out}/checkpoints")}
    _, meta = load_model(f"{out}/best")
    assert meta["epoch"] == resumed.summary["best_epoch"]
    assert list(tmp_path.iterdir()) == []
