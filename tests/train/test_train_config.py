"""The job config: YAML, dotted overrides, CLI overrides, image size, and every seed job file."""

from __future__ import annotations

import pytest
import yaml
from fixtures_data import JOBS

from raysegment.errors import ConfigError
from raysegment.train import TrainConfig, load_config
from raysegment.train.config import (
    apply_overrides,
    cli_overrides,
    parse_set,
    with_image_size,
)


def test_yaml_then_overrides(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"model": {"name": "unet", "config": {"depth": 3}}, "optim": {"lr": 0.01, "epochs": 5}}))
    config = load_config(str(job), cli_overrides(lr=0.5, sets=["model.config.base_channels=4", "optim.loss={bce: 0.3, dice: 0.7}"]))
    assert config.optim.lr == 0.5  # the option beats the file
    assert config.optim.epochs == 5  # the file beats the default
    assert config.model.config == {"depth": 3, "base_channels": 4}
    assert config.optim.loss == {"bce": 0.3, "dice": 0.7}


def test_saved_config_reloads_identically(tmp_path):
    config = load_config(None, {"out": str(tmp_path / "run"), "optim.epochs": 3, "data.preprocess.channels": ["flair"]})
    config.save(str(tmp_path / "config.yaml"))
    assert load_config(str(tmp_path / "config.yaml")) == config


def test_cli_overrides_map_options():
    out = cli_overrides(epochs=4, channels="flair, t1ce", encoder_weights="none", loss="bce_dice", augment=False, model=None)
    assert out == {"optim.epochs": 4, "data.preprocess.channels": ["flair", "t1ce"], "model.config.encoder_weights": None,
                   "optim.loss": "bce_dice", "data.augment.enabled": False}


def test_image_size_sets_last_resize_or_appends_one():
    config = load_config(None, {"data.preprocess.steps": [{"name": "resize", "size": 64}, {"name": "scale"}]}, image_size=32)
    assert config.data.preprocess.steps == [{"name": "resize", "size": 32}, {"name": "scale"}]
    cropped = load_config(None, {"data.preprocess.steps": [{"name": "center_crop", "size": 128}]})
    assert with_image_size(cropped, 48).data.preprocess.steps[-1] == {"name": "resize", "size": 48}


@pytest.mark.parametrize(
    "overrides, problem",
    [
        ({"optim.optimizer": "rmsprop"}, "optim.optimizer"),
        ({"model.name": "nonet"}, "unknown model 'nonet'"),
        ({"optim.epochs": 0}, "optim.epochs"),
        ({"optim.lrr": 1}, "optim.lrr"),
        ({"data.preprocess.steps": [{"name": "blur"}]}, "data.preprocess.steps"),
    ],
)
def test_invalid_values_are_one_line_config_errors(overrides, problem):
    with pytest.raises(ConfigError, match=problem) as info:
        apply_overrides(TrainConfig(), overrides, source="job.yaml")
    assert "\n" not in str(info.value) and str(info.value).startswith("job.yaml")


def test_bad_set_syntax_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set(["optim.lr"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(str(bad))


@pytest.mark.parametrize("job", JOBS, ids=lambda p: p.stem)
def test_job_files_validate_and_build_their_model(job):
    config = load_config(str(job))
    spec_config = dict(config.model.config)
    for key in ("encoder_weights", "weights"):  # no download, no published file in tests; the architecture is what is checked
        if key in spec_config:
            spec_config[key] = None
    from raysegment.models import create_model

    channels = len(config.data.preprocess.channels or ["mr"])
    create_model(config.model.name, in_channels=channels, classes=config.data.preprocess.num_classes, **spec_config)
