"""Trial resources and trial configs, without running Ray."""

from __future__ import annotations

import pytest

from raysegment.errors import ConfigError
from raysegment.train.config import TrainConfig
from raysegment.tune import load_tune_config
from raysegment.tune.run import base_train_config
from raysegment.tune.trial import scaling_overrides, trial_config


def test_a_trials_gpus_are_split_over_its_workers():
    assert scaling_overrides(1, 0.25) == {"scaling.workers": 1, "scaling.gpus_per_worker": 0.25}
    # two workers of 0.25 GPU each per trial (gpus_per_trial 0.5); how many trials fit: tests/test_sizing.py
    assert scaling_overrides(2, 0.5)["scaling.gpus_per_worker"] == 0.25


def test_trial_config_applies_params_and_the_search_settings(tiny_lgg):
    config = load_tune_config(train_config=tiny_lgg["train_yaml"], overrides={
        "manifest": tiny_lgg["manifest"], "max_epochs": 7, "workers_per_trial": 2, "gpus_per_trial": 0.5})
    base = base_train_config(config)
    assert base.optim.epochs == 7 and base.scaling.workers == 2 and base.scaling.gpus_per_worker == 0.25
    assert base.model.config == {"base_channels": 4, "depth": 2}
    trial = trial_config(base, {"model": {"name": "unetpp", "config": {"base_channels": 4}}, "optim.lr": 0.005}, "/x/trials/trial_00001")
    assert isinstance(trial, TrainConfig)
    assert (trial.model.name, trial.model.config, trial.optim.lr) == ("unetpp", {"base_channels": 4}, 0.005)
    assert trial.out == "/x/trials/trial_00001" and trial.tracking.progress is False
    with pytest.raises(ConfigError, match="optim.lr"):
        trial_config(base, {"optim.lr": -1.0}, "/x")


def test_a_relative_manifest_reaches_the_trials_as_an_absolute_path(tmp_path, monkeypatch):
    """Each trial's driver runs in a working directory of its own: a path relative to the caller's would miss."""
    monkeypatch.chdir(tmp_path)
    for overrides in ({"manifest": "m.parquet"}, {"train.data.manifest": "m.parquet"}):
        assert base_train_config(load_tune_config(overrides=overrides)).data.manifest == str(tmp_path / "m.parquet")
    assert base_train_config(load_tune_config(overrides={"manifest": "s3://bucket/m.parquet"})).data.manifest == "s3://bucket/m.parquet"


def test_set_null_reaches_the_trials(monkeypatch):
    """``--set KEY=null`` is a value (random encoder weights), not an option left out."""
    from typer.testing import CliRunner

    import raysegment.tune
    from raysegment.cli import app

    seen = []

    def fake_run_tune(config, **kwargs):
        seen.append(config)
        raise SystemExit(0)

    monkeypatch.setattr(raysegment.tune, "run_tune", fake_run_tune)
    result = CliRunner().invoke(app, ["tune", "--model", "unetpp", "--manifest", "m.parquet", "--out", "x",
                                      "--set", "train.model.config.encoder_weights=null", "--set", "samples=3"])
    assert result.exit_code == 0, result.output
    assert seen[0].samples == 3 and base_train_config(seen[0]).model.config == {"encoder_weights": None}
