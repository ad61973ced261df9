"""A tiny U-Net, U-Net++, TransUNet and smp model each train 2 epochs on 2 workers, resume, and evaluate.

Each model is its seed LGG job made tiny (``fixtures_data.trained_job``): one epoch in one run, then
the same command with ``--epochs 2``, which resumes it for epoch 2 instead of starting over.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from fixtures_data import MODEL_JOBS, assert_resumed

from raysegment import storage
from raysegment.evaluate import evaluate
from raysegment.models import load_model
from raysegment.train import load_config


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODEL_JOBS))
def test_train_two_epochs_resume_and_evaluate(trained_job, lgg_manifest, tmp_path, name):
    trained = trained_job(name)
    run = trained.run
    assert list(trained.first.history["epoch"]) == [1]
    history = pd.read_parquet(run / "history.parquet")
    assert_resumed(trained.first.history, history, epochs=2)
    for column in ("train_loss", "val_loss", "train_dice", "val_dice", "val_patient_dice", "val_empty_slices", "val_iou",
                   "val_precision", "val_recall", "train_accuracy", "val_accuracy", "train_precision", "train_recall"):
        assert history[column].notna().all()
    assert history[["val_dice", "val_patient_dice", "val_iou", "train_dice"]].apply(lambda c: c.between(0, 1)).all().all()
    assert (history["val_iou"] <= history["val_dice"] + 1e-9).all()  # IoU <= Dice always
    summary = json.loads((run / "summary.json").read_text())
    monitor = load_config(str(trained.job)).checkpoint.monitor  # what the seed's report chose its model by
    assert summary["monitor"] == monitor and summary["selected"] == "best"
    assert summary["best"][monitor] == pytest.approx(history[monitor].max())
    assert summary["hardware"]["workers"] == 2 and summary["images_per_s"] > 0
    _, meta = load_model(trained.resumed.best_model_uri)
    assert meta["model"]["name"] == name and meta["class_names"] == ["tumor"] and meta["epoch"] == summary["best_epoch"]
    assert meta["preprocess"]["steps"][-1] == {"name": "resize", "size": 32}
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir()) == ["epoch_0001", "epoch_0002"]
    assert (run / "train_curves.png").stat().st_size > 10_000

    scores = evaluate(str(run), lgg_manifest, "val", str(tmp_path / "eval"), max_cases=4)
    assert len(scores.cases) == scores.cases["case_id"].nunique() > 0
    assert scores.cases["dice"].between(0, 1).all()
    assert storage.exists(str(tmp_path / "eval" / "case_metrics.parquet"))
