"""``raysegment train`` and ``raysegment evaluate`` from the command line, with MLflow and TensorBoard."""

from __future__ import annotations

import json
import struct

import pandas as pd
import pytest
from fixtures_data import cli_train_run  # noqa: F401  (fixture)
from typer.testing import CliRunner

from raysegment.cli import app


def tensorboard_tags(folder) -> dict[str, int]:
    """Scalar tag -> number of events, read straight from the TFRecord event files."""
    from tensorboardX.proto import event_pb2

    counts: dict[str, int] = {}
    for path in folder.iterdir():
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                counts[value.tag] = counts.get(value.tag, 0) + 1
    return counts


@pytest.mark.slow
def test_train_and_evaluate_commands_with_mlflow(cli_train_run, lgg_manifest, tmp_path, monkeypatch):
    """``cli_train_run``: ``raysegment train`` with --optimizer adamw --scheduler onecycle --lr 0.003 --amp bf16
    --mlflow-uri, a YAML --loss and --set model.config=... (the progress tests read the same run's output)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    run, store, result = cli_train_run.run, cli_train_run.mlflow_uri, cli_train_run.result
    assert result.exit_code == 0, (result.output, str(result.exception))
    assert "epoch   2/2" in result.output and "best model:" in result.output

    config = (run / "config.yaml").read_text()
    assert "onecycle" in config and "bf16" in config and "base_channels: 4" in config
    history = pd.read_parquet(run / "history.parquet")
    assert list(history["epoch"]) == [1, 2] and history["lr"].iloc[-1] < 0.003  # one-cycle annealed

    from mlflow import MlflowClient

    client = MlflowClient(store)
    run_id = json.loads((run / "tracking.json").read_text())["mlflow_run_id"]
    record = client.get_run(run_id)
    assert record.data.params["optim.optimizer"] == "adamw" and record.data.params["optim.amp"] == "bf16"
    assert record.info.status == "FINISHED"
    dice = client.get_metric_history(run_id, "val_dice")
    assert sorted(m.step for m in dice) == [1, 2]
    assert [m.value for m in sorted(dice, key=lambda m: m.step)] == pytest.approx(list(history["val_dice"]))
    assert {"history.parquet", "summary.json", "train_curves.png", "config.yaml"} <= {a.path for a in client.list_artifacts(run_id)}

    tags = tensorboard_tags(run / "tensorboard")
    assert tags["val/dice"] == 2 and tags["train/loss"] == 2

    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["evaluate", "--model", str(run), "--manifest", lgg_manifest, "--out", str(out),
                                      "--split", "val,test", "--max-cases", "4"])
    assert result.exit_code == 0, result.output
    assert "dice" in result.output and "figure test_worst" in result.output
    # The job's metrics (a seed report's, `metrics: [fnr, dice]`) are the ones shown beside the loss, in its order.
    from raysegment.models import read_metadata

    assert read_metadata(str(run / "best"))["reported_metrics"] == ["fnr", "dice"] and " fnr " in result.output
    cases = pd.read_parquet(out / "case_metrics.parquet")
    assert set(cases["split"]) == {"val", "test"} and len(cases) == 8


@pytest.mark.slow
def test_history_records_every_score_and_each_term_of_the_combined_loss(cli_train_run):
    """``cli_train_run`` trains with ``--loss "{bce: 0.5, dice: 0.5}"``: each term is logged and plotted beside the total."""
    from raysegment import plots

    history = pd.read_parquet(cli_train_run.run / "history.parquet")
    for split in ("train", "val"):
        for score in ("dice", "iou", "precision", "recall", "accuracy", "specificity"):
            assert history[f"{split}_{score}"].between(0, 1).all(), f"{split}_{score}"
        total = 0.5 * history[f"{split}_loss_bce"] + 0.5 * history[f"{split}_loss_dice"]
        assert total.tolist() == pytest.approx(history[f"{split}_loss"].tolist(), rel=1e-4)
        # pixel accuracy weighs recall (over the lesion's pixels) and specificity (over the rest) by their counts
        pair = history[[f"{split}_recall", f"{split}_specificity"]]
        assert history[f"{split}_accuracy"].between(pair.min(axis=1) - 1e-9, pair.max(axis=1) + 1e-9).all()
    metrics = plots.curve_metrics(history)
    assert metrics[:3] == ["loss", "loss_bce", "loss_dice"] and {"accuracy", "precision", "recall", "patient_dice"} <= set(metrics)
    assert (cli_train_run.run / "train_curves.png").stat().st_size > 20_000  # a panel per metric
    tags = tensorboard_tags(cli_train_run.run / "tensorboard")
    assert tags["train/loss_bce"] == tags["val/loss_dice"] == tags["val/accuracy"] == 2


def test_train_command_reports_config_errors_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["train", "--model", "nonet", "--manifest", "m.parquet", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown model 'nonet'" in result.output


def test_train_command_needs_a_manifest(tmp_path):
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--manifest" in result.output


def test_tensorboard_copy_holds_every_epoch_once_closed(tmp_path):
    from raysegment.train.tracking import TensorBoardLogger

    logger = TensorBoardLogger(str(tmp_path / "run"))
    for epoch in (1, 2, 3):
        # More scalars than tensorboardX's event queue holds: its writer thread lags behind flush().
        logger.log({"epoch": epoch, **{f"val_m{k}": k / 10 for k in range(30)}, "train_loss": 1.0 / epoch}, epoch)
    logger.close()
    tags = tensorboard_tags(tmp_path / "run" / "tensorboard")
    assert tags["train/loss"] == 3 and all(tags[f"val/m{k}"] == 3 for k in range(30))
