"""Search spaces: defaults per model, YAML overrides, Tune domains, and ``--show-space``."""

from __future__ import annotations

import json

import pytest
from ray import tune
from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.errors import ConfigError
from raysegment.tune import load_tune_config, search_space
from raysegment.tune.space import decode_params, default_space, merge_space, to_tune


def test_default_space_per_model():
    unet, smp = default_space("unet"), default_space("smp-Unet")
    for space in (unet, smp):
        assert space["optim.lr"] == {"loguniform": [1e-4, 1e-2]}
        assert set(space["optim.loss"]["choice"]) == {"dice", "bce_dice", "jaccard", "focal", "tversky"}
        assert "optim.batch_size" in space and "optim.weight_decay" in space
    assert {"resnet34", "resnet50", "vgg16", "efficientnet-b0"} <= set(smp["model.config.encoder"]["choice"])
    assert "model.config.encoder" not in unet and "model.config.encoder" not in default_space("transunet")


def test_yaml_space_overrides_extends_and_drops(tmp_path):
    (tmp_path / "space.yaml").write_text(
        "optim.lr: {loguniform: [1.0e-3, 1.0e-1]}\n"
        "optim.momentum: {uniform: [0.8, 0.99]}\n"
        "optim.loss: null\n"
        "model: {choice: [{name: unet, config: {base_channels: 4}}, {name: unetpp, config: {base_channels: 4}}]}\n"
    )
    config = load_tune_config(space=str(tmp_path / "space.yaml"), overrides={"model": "unet"})
    space = search_space(config)
    assert space["optim.lr"] == {"loguniform": [1e-3, 1e-1]}
    assert space["optim.momentum"] == {"uniform": [0.8, 0.99]}
    assert "optim.loss" not in space
    assert "model.config.base_channels" not in space  # the "model" section key replaces the defaults below it
    assert "optim.batch_size" in space  # untouched defaults stay


def test_to_tune_domains_and_json_choices():
    space = {
        "optim.lr": {"loguniform": [1e-4, 1e-2]},
        "optim.momentum": {"uniform": [0.5, 0.9]},
        "optim.loss": {"grid": ["dice", "focal"]},
        "model": {"choice": [{"name": "unet", "config": {"depth": 2}}, {"name": "unetpp", "config": {}}]},
        "optim.epochs": 3,
    }
    params, encoded = to_tune(space)
    assert isinstance(params["optim.lr"], tune.search.sample.Float)
    assert params["optim.lr"].lower == 1e-4 and params["optim.lr"].upper == 1e-2
    assert isinstance(params["optim.lr"].sampler, tune.search.sample.LogUniform)
    assert params["optim.loss"] == {"grid_search": ["dice", "focal"]}
    assert params["optim.epochs"] == 3
    assert encoded == ["model"]
    sampled = params["model"].sample()
    assert isinstance(sampled, str)  # Optuna takes scalar categories only
    decoded = decode_params({"model.config.depth": 3, "model": sampled}, encoded)
    assert list(decoded) == ["model", "model.config.depth"]  # the section first, then keys inside it
    assert decoded["model"] == json.loads(sampled)


def test_merge_space_none_drops_and_section_replaces():
    merged = merge_space({"a.b": 1, "a.c": 2, "d": 3}, {"a": {"choice": [{}]}, "d": None})
    assert merged == {"a": {"choice": [{}]}}


@pytest.mark.parametrize("spec", [{"loguniform": [0, 1]}, {"uniform": [2, 1]}, {"choice": []}, {"uniform": [1]}])
def test_bad_distributions_name_the_key(spec):
    with pytest.raises(ConfigError, match="optim.lr"):
        to_tune({"optim.lr": spec})


def test_show_space_prints_the_default_space():
    result = CliRunner().invoke(app, ["tune", "--model", "smp-Unet", "--show-space"])
    assert result.exit_code == 0, result.output
    for text in ("optim.lr", "loguniform", "model.config.encoder", "efficientnet-b0", "bce_dice"):
        assert text in result.output


def test_tune_job_files_are_valid():
    for job in ("jobs/tune_unetpp.yaml", "jobs/tune_architectures.yaml"):
        config = load_tune_config(job)
        params, _ = to_tune(search_space(config))
        assert params, job
