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
    assert "classic" not in smp["model.config.encoder"]["choice"]
    for name in ("unet", "unetpp"):  # encoder x lr x loss, the classic encoder included
        assert default_space(name)["model.config.encoder"] == {"choice": ["classic", "resnet34", "resnet50", "vgg16", "efficientnet-b0"]}
        assert "model.config.base_channels" not in default_space(name)  # the classic encoder's alone
    assert "model.config.encoder" not in default_space("transunet")


@pytest.mark.parametrize("name", ["unet", "unetpp"])
def test_every_encoder_of_the_default_space_builds(name, monkeypatch):
    import segmentation_models_pytorch as smp
    import torch

    from raysegment.models import ModelSpec, count_parameters
    from raysegment.train.config import TrainConfig, apply_overrides

    monkeypatch.setattr(smp.encoders, "hf_hub_download", lambda *a, **k: pytest.fail("tried to download weights"))
    space = default_space(name)
    params, encoded = to_tune(space)
    base = apply_overrides(TrainConfig(), {"model.name": name})
    drawn = {params["model.config.encoder"].sample() for _ in range(40)}
    assert drawn == set(space["model.config.encoder"]["choice"])  # every encoder is drawn, so every one must build
    for encoder in sorted(drawn):
        sample = {key: domain.sample() if hasattr(domain, "sample") else domain for key, domain in params.items()}
        trial = apply_overrides(base, decode_params({**sample, "model.config.encoder": encoder}, encoded))
        with torch.device("meta"):  # shapes only: a forward pass on an smp encoder is tested in tests/models
            model = ModelSpec(trial.model.name, in_channels=3, classes=1, config=trial.model.config).build(pretrained=False)
        assert count_parameters(model) > 0


def test_model_options_that_do_not_go_with_a_searched_encoder_fail_before_any_trial():
    from raysegment.tune.run import base_train_config, check_models

    ok = load_tune_config(overrides={"model": "unetpp", "manifest": "m.parquet"})
    check_models(base_train_config(ok), search_space(ok))
    wide = load_tune_config(overrides={"model": "unetpp", "manifest": "m.parquet", "train.model.config.base_channels": 8})
    with pytest.raises(ConfigError, match=r"trials drawing model.config.encoder=resnet34 would fail: unetpp: base_channels=8 applies to the classic"):
        check_models(base_train_config(wide), search_space(wide))
    # dropping the encoder from the space keeps the classic one, which takes it
    classic = load_tune_config(overrides={"model": "unetpp", "manifest": "m.parquet", "train.model.config.base_channels": 8,
                                          "space": {"model.config.encoder": None}})
    check_models(base_train_config(classic), search_space(classic))


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
    assert "model.config.encoder" not in space  # the "model" section key replaces the defaults below it
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


@pytest.mark.parametrize("model", ["smp-Unet", "unetpp"])
def test_show_space_prints_the_default_space(model):
    result = CliRunner().invoke(app, ["tune", "--model", model, "--show-space"])
    assert result.exit_code == 0, result.output
    for text in (f"search space of {model}", "optim.lr", "loguniform", "model.config.encoder", "efficientnet-b0", "bce_dice"):
        assert text in result.output
    assert ("classic" in result.output) == (model == "unetpp")


def test_tune_job_files_are_valid():
    from raysegment.tune.run import base_train_config, check_models

    for job in ("jobs/tune_unetpp.yaml", "jobs/tune_architectures.yaml"):
        config = load_tune_config(job, overrides={"manifest": "m.parquet"})
        params, _ = to_tune(search_space(config))
        assert params, job
        check_models(base_train_config(config), search_space(config))  # every model the search draws builds
