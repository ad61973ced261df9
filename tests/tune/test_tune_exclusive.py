"""A search over exclusive classes: trials train the softmax, are ranked per patient and the best model writes label maps."""

from __future__ import annotations

import pytest
import yaml
from fixtures_data import make_manifest

from raysegment.models import read_metadata
from raysegment.tune import load_tune_config, run_tune
from tests.tune.conftest import TINY_TRAIN

pytestmark = pytest.mark.slow


def test_search_ranks_exclusive_class_trials_per_patient(ray_session, tmp_path):
    manifest = make_manifest(tmp_path, "msd", patients=4, size=32, depth=6)
    train = {**TINY_TRAIN, "data": {**TINY_TRAIN["data"], "preprocess": {
        "channels": ["T1", "T2"], "labels": {"anterior": [1], "posterior": [2]},
        "steps": [{"name": "zscore", "scope": "volume"}, {"name": "resize", "size": 32}]}}}
    job = tmp_path / "tune.yaml"
    job.write_text(yaml.safe_dump({
        "out": str(tmp_path / "exp"), "model": "unet", "manifest": manifest, "samples": 2, "max_epochs": 1,
        "max_concurrent": 1, "scheduler": "fifo", "search": "random", "seed": 0, "train": train,
        "space": {"optim.lr": {"loguniform": [1.0e-3, 1.0e-2]}, "optim.loss": {"choice": ["bce_dice", "focal"]},
                  "optim.batch_size": None, "optim.weight_decay": None, "model.config.encoder": None},
    }))
    config = load_tune_config(str(job))
    assert config.metric == "val_patient_dice"
    result = run_tune(config)
    assert len(result.trials) == 2 and set(result.trials["status"]) == {"completed"}
    assert result.history[["val_patient_dice_anterior", "val_patient_dice_posterior"]].notna().all().all()
    assert result.best["val_patient_dice"] == result.trials["best_val_patient_dice"].max()
    meta = read_metadata(result.best_model_uri)
    assert meta["preprocess"]["label_mode"] == "exclusive" and meta["model"]["classes"] == 3
