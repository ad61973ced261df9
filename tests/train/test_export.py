"""Every kept checkpoint of a run is a model: best/ and last/ are exported, any kept epoch on demand."""

from __future__ import annotations

import json
import re

import pytest
import torch
from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.errors import ConfigError
from raysegment.models import load_model
from raysegment.train.export import checkpoint_uri, export_epoch, kept_epochs, resolve_model

pytestmark = pytest.mark.slow


def _state(run, epoch: int) -> dict:
    return torch.load(f"{checkpoint_uri(str(run), epoch)}/state.pt", map_location="cpu", weights_only=True)["model"]


def _same_weights(model, state: dict) -> bool:
    return all(torch.equal(value, state[key]) for key, value in model.state_dict().items())


def test_best_and_last_are_models_of_their_epochs(trained_job):
    trained = trained_job("unet")
    run, summary = trained.run, trained.resumed.summary
    assert kept_epochs(str(run)) == [1, 2]
    last, last_meta = load_model(str(run / "last"))
    assert last_meta["epoch"] == 2 and summary["last_model_uri"] == str(run / "last")
    assert _same_weights(last, _state(run, 2))
    best, best_meta = load_model(str(run / "best"))
    assert best_meta["epoch"] == summary["best_epoch"] and _same_weights(best, _state(run, summary["best_epoch"]))
    # Everything inference needs travels with each export, the post-processing included.
    for meta in (best_meta, last_meta):
        assert meta["postprocess"] == {"threshold": 0.5, "largest_component": False, "mirror": False}
        assert meta["channels"] == ["pre-contrast", "flair", "post-contrast"] and meta["class_names"] == ["tumor"]


def test_an_epoch_checkpoint_resolves_to_an_exported_model(trained_job, tmp_path):
    run = trained_job("unet").run
    uri = resolve_model(checkpoint_uri(str(run), 1))
    assert uri == str(run / "epochs" / "epoch_0001")
    model, meta = load_model(uri)
    assert meta["epoch"] == 1 and _same_weights(model, _state(run, 1))
    history = json.loads((run / "checkpoints" / "epoch_0001" / "history.json").read_text())
    assert meta["metrics"]["val_patient_dice"] == pytest.approx(history[0]["val_patient_dice"])
    assert resolve_model(str(run)) == str(run / "best")
    out = export_epoch(str(run), 2, str(tmp_path / "exported"))
    assert _same_weights(load_model(out)[0], _state(run, 2))


def test_an_epoch_that_was_not_kept_names_the_kept_ones(trained_job, tmp_path):
    run = trained_job("unet").run
    with pytest.raises(ConfigError, match=r"no checkpoint of epoch 7 is kept \(kept: \[1, 2\]\)"):
        export_epoch(str(run), 7, str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="not a model checkpoint"):
        resolve_model(str(tmp_path))


def test_evaluate_command_takes_an_epoch_checkpoint(trained_job, lgg_manifest, tmp_path):
    run = trained_job("unet").run
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["evaluate", "--model", str(run / "checkpoints" / "epoch_0001"), "--manifest", lgg_manifest,
                                      "--split", "val", "--out", str(out), "--max-cases", "4"])
    assert result.exit_code == 0, result.output
    assert (out / "case_metrics.parquet").exists() and "patient_dice" in result.output
    # No terminal under CliRunner: a plain closing progress line counts the cases scored.
    assert re.search(r"^evaluate  cases 4/4  .*finished$", result.output, re.MULTILINE), result.output


def test_export_and_infer_commands_take_run_folders_and_epochs(trained_job, lgg_manifest, tmp_path):
    run = trained_job("unet").run
    result = CliRunner().invoke(app, ["export", str(run), "--epoch", "1", "--out", str(tmp_path / "model")])
    assert result.exit_code == 0, result.output
    assert load_model(str(tmp_path / "model"))[1]["epoch"] == 1
    result = CliRunner().invoke(app, ["export", str(run), "--epoch", "9", "--out", str(tmp_path / "nine")])
    assert result.exit_code == 2 and "no checkpoint of epoch 9 is kept" in result.output
    out = tmp_path / "infer"
    result = CliRunner().invoke(app, ["infer", "--model", str(run), "--manifest", lgg_manifest, "--out", str(out), "--limit", "3"])
    assert result.exit_code == 0, result.output
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["model"]["uri"] == str(run / "best") and run_json["done"] == 3
