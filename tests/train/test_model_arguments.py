"""Every command that takes a model takes a run folder, a run's checkpoint or a model folder alike.

The run here is written by hand in the layout ``raysegment train`` leaves (template, kept epoch
checkpoints with their history, ``best/``, ``summary.json``), so no Ray run is needed; the trained
runs of ``fixtures_data`` check ``evaluate`` and ``infer`` on real runs (``test_export.py``).
"""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.compare import compare
from raysegment.models import ModelSpec, load_model
from raysegment.train.export import export_epoch, resolve_model, write_template
from raysegment.train.state import HISTORY_FILE, STATE_FILE

SPEC = ModelSpec("unet", in_channels=3, classes=1, config={"base_channels": 4, "depth": 2})
HISTORY = [{"epoch": 1, "train_dice": 0.2, "val_dice": 0.3, "val_patient_dice": 0.25},
           {"epoch": 2, "train_dice": 0.4, "val_dice": 0.5, "val_patient_dice": 0.45}]


@pytest.fixture
def run(tmp_path):
    """A two-epoch training run whose best model is epoch 2."""
    run = tmp_path / "run"
    write_template(str(run), SPEC.to_dict(), class_names=["tumor"], channels=["a", "b", "c"])
    for epoch in (1, 2):
        torch.manual_seed(epoch)
        folder = run / "checkpoints" / f"epoch_{epoch:04d}"
        folder.mkdir(parents=True)
        torch.save({"model": SPEC.build().state_dict()}, folder / STATE_FILE)
        (folder / HISTORY_FILE).write_text(json.dumps(HISTORY[:epoch]))
    export_epoch(str(run), 2, str(run / "best"))
    (run / "summary.json").write_text(json.dumps({"best_model_uri": str(run / "best"), "best": HISTORY[1], "best_epoch": 2,
                                                  "epochs_run": 2}))
    return run


def _weights(uri) -> dict:
    return load_model(str(uri))[0].state_dict()


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_each_form_resolves_to_a_model_folder(run):
    assert resolve_model(str(run)) == str(run / "best")
    assert resolve_model(str(run / "best")) == str(run / "best")
    assert resolve_model(str(run / "checkpoints" / "epoch_0001")) == str(run / "epochs" / "epoch_0001")


def test_export_takes_a_run_a_checkpoint_or_a_model(run, tmp_path):
    def export(*args: str) -> str:
        result = CliRunner().invoke(app, ["export", *args])
        assert result.exit_code == 0, result.output
        return result.output

    export(str(run), "--out", str(tmp_path / "from_run"))  # its best model
    assert _same(_weights(tmp_path / "from_run"), _weights(run / "best"))
    assert load_model(str(tmp_path / "from_run"))[1]["epoch"] == 2
    export(str(run / "best"), "--out", str(tmp_path / "from_model"))  # a copy
    assert _same(_weights(tmp_path / "from_model"), _weights(run / "best"))
    export(str(run / "checkpoints" / "epoch_0001"), "--out", str(tmp_path / "from_checkpoint"))
    export(str(run), "--epoch", "1", "--out", str(tmp_path / "epoch1"))
    assert load_model(str(tmp_path / "from_checkpoint"))[1]["epoch"] == load_model(str(tmp_path / "epoch1"))[1]["epoch"] == 1
    assert _same(_weights(tmp_path / "from_checkpoint"), _weights(tmp_path / "epoch1"))
    assert not _same(_weights(tmp_path / "epoch1"), _weights(run / "best"))


def test_export_refuses_an_epoch_that_does_not_apply(run, tmp_path):
    for source, problem in [(run / "checkpoints" / "epoch_0001", "is the checkpoint of epoch 1, not of epoch 2"),
                            (run / "best", "--epoch picks a kept epoch of a training run"),
                            (run, "no checkpoint of epoch 9 is kept")]:
        epoch = "9" if source == run else "2"
        result = CliRunner().invoke(app, ["export", str(source), "--epoch", epoch, "--out", str(tmp_path / "x")])
        assert result.exit_code == 2 and problem in " ".join(result.output.split()), result.output
    result = CliRunner().invoke(app, ["export", str(tmp_path), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "not a model checkpoint" in result.output


def test_compare_takes_a_run_a_checkpoint_and_a_model(run, tmp_path):
    sources = [str(run), str(run / "checkpoints" / "epoch_0001"), str(run / "best")]
    table = compare(sources, str(tmp_path / "cmp")).table
    assert list(table.index) == ["run", "epoch_0001", "best"]
    assert list(table["kind"]) == ["train", "model", "model"]
    assert list(table["val_dice"]) == pytest.approx([0.5, 0.3, 0.5])
    assert list(table["val_patient_dice"]) == pytest.approx([0.45, 0.25, 0.45])
    assert list(table["model_epoch"]) == [2, 1, 2]
    assert table["params"].nunique() == 1 and table.loc["best", "model"] == "unet"
    result = CliRunner().invoke(app, ["compare", *sources, "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["compare", str(tmp_path), "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2 and "not a train run, tune experiment, evaluate output or model" in result.output


def test_a_run_that_selects_its_final_weights_stands_for_last(run):
    from raysegment.compare.sources import read_record

    export_epoch(str(run), 2, str(run / "last"), metrics=HISTORY[1])
    export_epoch(str(run), 1, str(run / "best"), metrics=HISTORY[0])  # a noisy validation picked an early epoch
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "selected": "last"}))
    assert resolve_model(str(run)) == str(run / "last")
    assert _same(_weights(resolve_model(str(run))), _weights(resolve_model(str(run / "checkpoints" / "epoch_0002"))))
    # `compare` shows the model the run stands for, with its own epoch's figures.
    record = read_record(str(run))
    assert record.info["model_epoch"] == 2 and record.metrics["val_dice"] == pytest.approx(0.5)
    (run / "summary.json").write_text(json.dumps({**summary, "selected": "best"}))
    assert resolve_model(str(run)) == str(run / "best")
    record = read_record(str(run))
    assert record.info["model_epoch"] == 1 and record.metrics["val_dice"] == pytest.approx(0.3)
