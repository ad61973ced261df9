"""The seed jobs (``jobs/*_seedNNN_*.yaml``) take every setting their report states.

``SEEDS`` is read off the five seed reports: one row per experiment, each setting the report states
with its value, and the settings the report leaves open, which the job must mark "unstated" on
their line. Every setting line of a seed job cites its report, its header names the report and its
deliberate differences, and its global batch (per-worker batch x workers) is the report's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fixtures_data import JOBS, JOBS_DIR

from raysegment.errors import ConfigError
from raysegment.train import load_config
from raysegment.train.config import cli_overrides


@dataclass(frozen=True)
class Seed:
    """One experiment of a seed report.

    Attributes:
        report: the report's file name in the project's seeds folder.
        settings: dotted config key -> the value the report states.
        global_batch: the report's batch size (one device), None where it states none.
        unstated: settings the report leaves open: dotted keys, or ``data.preprocess.steps.<name>``
            for one preprocessing step.
    """

    report: str
    settings: dict[str, Any]
    global_batch: int | None
    unstated: tuple[str, ...] = field(default=())

    @property
    def number(self) -> str:
        return self.report[:3]


LGG_CHANNELS = ["pre-contrast", "flair", "post-contrast"]
#: Report 000: Keras data pipeline (Listings 1-3) and training of its U-Net (Listings 6-7, §3.2).
R000 = {
    "data.preprocess.channels": LGG_CHANNELS,
    "data.preprocess.labels": {"tumor": "nonzero"},
    "data.preprocess.steps": [{"name": "scale", "mode": "dtype"}, {"name": "resize", "size": 128}],
    "data.preprocess.slice_selection": "all",
    "data.augment.enabled": False,
    "optim.epochs": 50,
    "optim.optimizer": "adam",
    "optim.lr": 1e-3,
    "optim.weight_decay": 0.0,
    "optim.scheduler": "none",
    "optim.loss": "bce",
    "optim.patience": None,
    "checkpoint.monitor": "val_dice",
    "postprocess.threshold": 0.5,
    "postprocess.largest_component": False,
}
R000_TRANSUNET = {
    **{key: R000[key] for key in ("data.preprocess.channels", "data.preprocess.labels", "data.preprocess.slice_selection",
                                  "data.augment.enabled", "optim.patience", "checkpoint.monitor", "postprocess.threshold",
                                  "postprocess.largest_component")},
    "data.preprocess.steps": [{"name": "scale", "mode": "dtype"}, {"name": "resize", "size": 224}],
}
#: Report 001: PyTorch, both models (§3.2.2, §3.5, Figures 6-8).
R001 = {
    "data.preprocess.channels": LGG_CHANNELS,
    "data.preprocess.labels": {"tumor": "nonzero"},
    "data.preprocess.steps": [{"name": "scale", "mode": "dtype"}, {"name": "resize", "size": 224}],
    "data.preprocess.slice_selection": "balanced",
    "data.augment.enabled": True,
    "optim.epochs": 40,
    "optim.optimizer": "adamw",
    "optim.weight_decay": 0.01,
    "optim.scheduler": "none",
    "optim.loss": "bce",
    "optim.patience": None,
    "postprocess.threshold": 0.5,
    "postprocess.largest_component": False,
    "metrics": ["iou", "dice", "precision", "recall"],
}
R001_UNSTATED = ("data.preprocess.steps.scale", "checkpoint.monitor")
VIT_B16 = {"model.config.img_size": 224, "model.config.hidden_size": 768, "model.config.num_layers": 12,
           "model.config.num_heads": 12, "model.config.dropout": 0.0, "model.config.n_skip": 0,
           "model.config.decoder_channels": [512, 256, 128, 64]}
#: Report 002: what it states for all four models (§3, §4, §7).
R002 = {
    "data.preprocess.channels": LGG_CHANNELS,
    "data.preprocess.labels": {"tumor": "nonzero"},
    "data.preprocess.steps": [{"name": "scale", "mode": "dtype"}],
    "data.preprocess.slice_selection": "all",
    "data.augment.enabled": True,
    "data.augment.brightness": 0.0,
    "data.augment.contrast": 0.0,
    "optim.scheduler": "none",
    "optim.loss": "dice",
    "optim.patience": None,
    "postprocess.largest_component": False,
    "metrics": ["dice", "iou"],
}
R002_UNSTATED = ("data.preprocess.steps.scale", "data.augment.hflip", "data.augment.vflip", "data.augment.rotate",
                 "data.augment.shift", "data.augment.scale", "optim.batch_size", "optim.optimizer", "optim.lr",
                 "optim.weight_decay", "scaling.gpus_per_worker", "checkpoint.monitor", "postprocess.threshold")
R002_PRETRAINED = ("optim.epochs", *R002_UNSTATED)

SEEDS = {
    "lgg_seed000_unet": Seed("000_1582e5d169f9057e.txt", {
        **R000, "model.name": "unet", "model.config.base_channels": 64, "model.config.depth": 4,
        "metrics": ["accuracy", "iou", "dice", "recall", "specificity", "fnr"],
    }, global_batch=16),
    "lgg_seed000_unetpp": Seed("000_1582e5d169f9057e.txt", {
        **R000, "model.name": "unetpp", "model.config.base_channels": 64, "model.config.depth": 4,
        "model.config.deep_supervision": False, "metrics": ["accuracy", "dice", "recall", "specificity", "fnr"],
    }, global_batch=16),
    "lgg_seed000_transunet": Seed("000_1582e5d169f9057e.txt", {
        **R000_TRANSUNET, "model.name": "transunet", **VIT_B16, "metrics": ["dice", "iou", "recall"],
    }, global_batch=16, unstated=("optim.epochs", "optim.optimizer", "optim.lr", "optim.weight_decay", "optim.scheduler",
                                  "optim.loss")),
    "lgg_seed001_unet": Seed("001_543ae10fe93eebde.txt", {
        **R001, "model.name": "unet", "model.config.base_channels": 64, "model.config.depth": 4, "model.config.norm": "none",
        "optim.lr": 3e-4,
    }, global_batch=8, unstated=R001_UNSTATED),
    "lgg_seed001_transunet": Seed("001_543ae10fe93eebde.txt", {
        **R001, "model.name": "transunet", **VIT_B16, "optim.lr": 5e-5,
        "model.config.weights": "s3://raysegment-models/pretrained/R50+ViT-B_16.npz",
    }, global_batch=8, unstated=R001_UNSTATED),
    "lgg_seed002_unet": Seed("002_612c8389735f829a.txt", {
        **R002, "model.name": "unet", "optim.epochs": 120,
    }, global_batch=None, unstated=("model.config.base_channels", "model.config.depth", *R002_UNSTATED)),
    "lgg_seed002_unet_vgg16": Seed("002_612c8389735f829a.txt", {
        **R002, "model.name": "smp-Unet", "model.config.encoder": "vgg16", "model.config.encoder_weights": "imagenet",
        "model.config.freeze_encoder_stages": 0,
    }, global_batch=None, unstated=R002_PRETRAINED),
    "lgg_seed002_unet_resnet50": Seed("002_612c8389735f829a.txt", {
        **R002, "model.name": "smp-Unet", "model.config.encoder": "resnet50", "model.config.encoder_weights": "imagenet",
        "model.config.freeze_encoder_stages": 0,
    }, global_batch=None, unstated=R002_PRETRAINED),
    "lgg_seed002_unet_resnet50_frozen": Seed("002_612c8389735f829a.txt", {
        **R002, "model.name": "smp-Unet", "model.config.encoder": "resnet50", "model.config.encoder_weights": "imagenet",
        "model.config.freeze_encoder_stages": 2,
    }, global_batch=None, unstated=R002_PRETRAINED),
    "brats_seed003_unet_resnet34": Seed("003_a76a47bb059a2618.txt", {
        "data.preprocess.channels": ["t1", "t1ce", "t2", "flair"],
        "data.preprocess.labels": {"tumor": "nonzero"},
        "data.preprocess.slice_selection": "middle",
        "data.augment.enabled": True,
        "data.augment.hflip": 0.5,
        "data.augment.vflip": 0.5,
        "data.augment.rotate": 5.0,
        "data.augment.shift": 0.0,
        "data.augment.scale": 0.0,
        "data.augment.affine_p": 1.0,
        "data.augment.brightness": 0.6,
        "data.augment.contrast": 0.6,
        "data.augment.intensity_p": 1.0,
        "model.name": "smp-Unet",
        "model.config.encoder": "resnet34",
        "model.config.encoder_weights": "imagenet",
        "optim.epochs": 200,
        "optim.optimizer": "adamw",
        "optim.lr": 1e-4,
        "optim.scheduler": "none",
        "optim.loss": {"bce": 1.0, "jaccard": 1.0},  # "BCELoss ... and IoU loss"; unweighted, as it states no weights
        "optim.patience": None,
        "postprocess.largest_component": False,
        "metrics": ["iou"],
    }, global_batch=64, unstated=("data.preprocess.steps.zscore", "optim.weight_decay", "checkpoint.select",
                                  "postprocess.threshold")),
    "lv_seed004_unet": Seed("004_67ae01c1edfe4afa.txt", {
        "data.preprocess.channels": ["mr"],
        "data.preprocess.labels": {"lv": "nonzero"},
        "data.preprocess.steps": [{"name": "percentile_clip", "low": 5, "high": 95}, {"name": "center_crop", "size": 128}],
        "data.preprocess.slice_selection": "all",
        "data.augment.enabled": False,
        "model.name": "unet",
        "model.config.base_channels": 32,
        "model.config.depth": 4,
        "model.config.norm": "none",
        "optim.epochs": 100,
        "optim.optimizer": "adam",
        "optim.lr": 5e-4,
        "optim.weight_decay": 0.0,
        "optim.scheduler": "none",
        "optim.loss": [{"name": "dice", "params": {"smooth": 1e-5}}],
        "optim.patience": None,
        "checkpoint.monitor": "val_dice",
        "postprocess.threshold": 0.5,
        "postprocess.largest_component": False,
        "metrics": ["precision", "recall", "dice", "iou"],
    }, global_batch=4, unstated=("scaling.gpus_per_worker",)),
}


def _job(stem: str) -> Path:
    return JOBS_DIR / f"{stem}.yaml"


def _get(data: dict, key: str) -> Any:
    for part in key.split("."):
        assert part in data, f"no {key!r} in the job"
        data = data[part]
    return data


def _setting_lines(text: str) -> list[tuple[str, str]]:
    """(setting, comment) of each line of ``text`` that sets a value (sections and comment lines aside)."""
    out = []
    for line in text.splitlines():
        code, _, comment = line.partition("  # ")
        if code.strip() and not code.lstrip().startswith("#") and not code.rstrip().endswith(":"):
            out.append((code.strip(), comment))
    return out


def _line_of(text: str, key: str) -> str:
    """The comment on the line that sets ``key`` (``data.preprocess.steps.<name>``: that step's line)."""
    parent, _, leaf = key.rpartition(".")
    start = f"- {{name: {leaf}" if parent == "data.preprocess.steps" else f"{leaf}:"
    comments = [comment for code, comment in _setting_lines(text) if code.startswith(start)]
    assert len(comments) == 1, f"{key}: expected one line starting {start!r}, found {len(comments)}"
    return comments[0]


def test_the_table_covers_every_seed_job_and_report():
    assert {p.stem for p in JOBS if "_seed" in p.stem} == set(SEEDS)
    assert {seed.number for seed in SEEDS.values()} == {"000", "001", "002", "003", "004"}


@pytest.mark.parametrize("stem", SEEDS)
def test_job_takes_every_setting_its_report_states(stem):
    config = load_config(str(_job(stem))).model_dump(mode="json")
    seed = SEEDS[stem]
    wrong = {key: (_get(config, key), value) for key, value in seed.settings.items() if _get(config, key) != value}
    assert not wrong, f"{stem}: setting: (job, report {seed.number}): {wrong}"


@pytest.mark.parametrize("stem", SEEDS)
def test_global_batch_is_the_reports(stem):
    config, seed = load_config(str(_job(stem))), SEEDS[stem]
    # One worker: the batch and its BatchNorm statistics are one device's, as in every report.
    assert config.scaling.workers == 1
    if seed.global_batch is None:
        assert "optim.batch_size" in seed.unstated
    else:
        assert config.optim.batch_size * config.scaling.workers == seed.global_batch


@pytest.mark.parametrize("stem", SEEDS)
def test_every_setting_cites_the_report_and_open_ones_say_so(stem):
    text, seed = _job(stem).read_text(), SEEDS[stem]
    uncited = [code for code, comment in _setting_lines(text) if seed.number not in comment]
    assert not uncited, f"{stem}: settings without a comment citing report {seed.number}: {uncited}"
    for key in seed.unstated:
        assert "unstated" in _line_of(text, key), f"{stem}: {key} is not in report {seed.number}; its line must say so"


@pytest.mark.parametrize("stem", SEEDS)
def test_header_names_the_report_and_its_differences(stem):
    text, seed = _job(stem).read_text(), SEEDS[stem]
    header = text[: text.index("\ndata:")]
    assert seed.report in header
    assert f"Deliberate differences from report {seed.number}:" in header
    assert "by patient" in header
    assert f"--config jobs/{stem}.yaml" in header


def test_metrics_name_known_metrics():
    assert load_config(None).metrics == []
    assert load_config(None, cli_overrides(sets=["metrics=[dice, fnr]"])).metrics == ["dice", "fnr"]
    with pytest.raises(ConfigError, match=r"unknown metric\(s\) 'sensitivity'; valid: dice, iou, precision, recall"):
        load_config(None, {"metrics": ["dice", "sensitivity"]})
