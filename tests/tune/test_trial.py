"""Trial resources and trial configs, without running Ray."""

from __future__ import annotations

import pytest

from raysegment.errors import ConfigError
from raysegment.train.config import TrainConfig
from raysegment.tune import load_tune_config
from raysegment.tune.run import base_train_config
from raysegment.tune.trial import max_concurrent_trials, scaling_overrides, trial_config


def test_fractional_gpus_pack_trials_on_one_gpu():
    assert scaling_overrides(1, 0.25) == {"scaling.workers": 1, "scaling.gpus_per_worker": 0.25}
    # 16 CPUs and 1 GPU: four quarter-GPU trials fit; the GPU is the limit.
    assert max_concurrent_trials({"CPU": 16, "GPU": 1}, 1, 1.0, 0.25, 0.1) == 4
    # two workers of 0.25 GPU each per trial (gpus_per_trial 0.5): two trials.
    assert scaling_overrides(2, 0.5)["scaling.gpus_per_worker"] == 0.25
    assert max_concurrent_trials({"CPU": 16, "GPU": 1}, 2, 1.0, 0.25, 0.1) == 2


def test_concurrency_keeps_a_cpu_for_data_and_honours_the_request():
    # 2 CPUs: 1 kept for Ray Data tasks, 0.35 per trial -> 2 trials.
    assert max_concurrent_trials({"CPU": 2}, 1, 0.25, 0.0, 0.1) == 2
    assert max_concurrent_trials({"CPU": 2}, 1, 0.25, 0.0, 0.1, requested=1) == 1
    assert max_concurrent_trials({"CPU": 64}, 1, 1.0, 0.0, 0.1, requested=8) == 8
    with pytest.raises(ConfigError, match="data loading"):
        max_concurrent_trials({"CPU": 2}, 2, 1.0, 0.0, 0.1)
    with pytest.raises(ConfigError, match="GPU"):
        max_concurrent_trials({"CPU": 8}, 1, 1.0, 1.0, 0.1)


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
