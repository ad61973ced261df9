"""A tiny U-Net, U-Net++, TransUNet and smp model each train 2 epochs on 2 workers, resume, and evaluate."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import tiny_config

from raysegment import storage
from raysegment.evaluate import evaluate
from raysegment.models import load_model
from raysegment.train import apply_overrides, train

TINY_TRANSUNET = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "mlp_ratio": 2.0, "img_size": 32, "cnn_layers": [1, 1, 1],
                  "cnn_widths": [8, 16, 32], "stem_channels": 8, "norm_groups": 4, "head_channels": 16,
                  "decoder_channels": [16, 8, 8, 8]}
MODELS = {
    "unet": {"base_channels": 4, "depth": 2},
    "unetpp": {"base_channels": 4, "depth": 2, "deep_supervision": True},
    "transunet": TINY_TRANSUNET,
    "smp-Unet": {"encoder": "tu-mobilenetv3_small_050", "encoder_weights": None, "encoder_depth": 3, "decoder_channels": [16, 8, 4]},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_train_two_epochs_resume_and_evaluate(ray_session, lgg_manifest, tmp_path, name):
    """Epoch 1 in one run; the same command with --epochs 2 resumes it for epoch 2 instead of starting over."""
    run = tmp_path / "run"
    config = tiny_config(lgg_manifest, run, model=name, model_config=MODELS[name], **{"optim.epochs": 1})
    first = train(config)
    assert list(first.history["epoch"]) == [1]

    result = train(apply_overrides(config, {"optim.epochs": 2}))
    history = pd.read_parquet(run / "history.parquet")
    assert list(history["epoch"]) == [1, 2]
    pd.testing.assert_frame_equal(history.iloc[:1], first.history, check_dtype=False)  # epoch 1 kept, not re-run
    for column in ("train_loss", "val_loss", "train_dice", "val_dice", "val_iou", "val_precision", "val_recall"):
        assert history[column].notna().all()
    assert history[["val_dice", "val_iou", "train_dice"]].apply(lambda c: c.between(0, 1)).all().all()
    assert (history["val_iou"] <= history["val_dice"] + 1e-9).all()  # IoU <= Dice always
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"]["val_dice"] == pytest.approx(history["val_dice"].max())
    assert summary["hardware"]["workers"] == 2 and summary["images_per_s"] > 0
    _, meta = load_model(result.best_model_uri)
    assert meta["model"]["name"] == name and meta["class_names"] == ["tumor"] and meta["epoch"] == summary["best_epoch"]
    assert meta["preprocess"]["steps"][-1] == {"name": "resize", "size": 32}
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir()) == ["epoch_0001", "epoch_0002"]
    assert (run / "train_curves.png").stat().st_size > 10_000

    scores = evaluate(str(run), lgg_manifest, "val", str(tmp_path / "eval"), max_cases=4)
    assert len(scores.cases) == scores.cases["case_id"].nunique() > 0
    assert scores.cases["dice"].between(0, 1).all()
    assert storage.exists(str(tmp_path / "eval" / "case_metrics.parquet"))
