"""InferConfig: YAML + CLI overrides + {date} placeholders, one-line errors."""

from __future__ import annotations

import datetime

import pytest

from raysegment.errors import ConfigError
from raysegment.infer import InferConfig


def test_date_placeholders_are_filled(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: s3://m/{date}\nmanifest: s3://a/manifests/date={date}/manifest.parquet\nout: s3://r/date={date}\nworkers: 2\n")
    config = InferConfig.load(str(path), date="2026-03-04")
    assert config.manifest == "s3://a/manifests/date=2026-03-04/manifest.parquet"
    assert (config.out, config.model, config.workers) == ("s3://r/date=2026-03-04", "s3://m/2026-03-04", 2)


def test_default_date_is_today_utc(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: m\nmanifest: s3://b/date={date}/m.parquet\nout: o/{date}\n")
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    assert InferConfig.load(str(path)).out == f"o/{today}"


def test_cli_values_override_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: m\nmanifest: x.parquet\nout: o\nbatch_size: 8\n")
    config = InferConfig.load(str(path), batch_size=2, workers=None, date="2026-01-01")
    assert (config.batch_size, config.workers) == (2, None)  # None: not given, sized to the machine when the run starts


@pytest.mark.parametrize(
    "text, date, message",
    [
        ("model: m\nmanifest: x\nout: o\nbatch_sise: 2\n", None, "batch_sise"),
        ("model: m\nmanifest: x\nout: o\nformat: jpeg\n", None, "format"),
        ("model: m\nmanifest: x\n", None, "out"),
        ("model: m\nmanifest: x\nout: o\n", "03/04/2026", "expected YYYY-MM-DD"),
        ("- just\n- a list\n", None, "expected a mapping"),
    ],
)
def test_bad_configs_are_one_line_errors(tmp_path, text, date, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        InferConfig.load(str(path), date=date)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "saved, given, used",
    [
        (None, {}, {"threshold": 0.5, "largest_component": False, "mirror": False}),  # checkpoints from before post-processing was saved
        ({"threshold": 0.4, "largest_component": True}, {}, {"threshold": 0.4, "largest_component": True, "mirror": False}),
        ({"threshold": 0.4, "largest_component": True}, {"largest_component": False}, {"threshold": 0.4, "largest_component": False, "mirror": False}),
        ({"threshold": 0.4, "largest_component": False}, {"threshold": 0.7}, {"threshold": 0.7, "largest_component": False, "mirror": False}),
        ({"threshold": 0.4, "mirror": False}, {"mirror": True}, {"threshold": 0.4, "largest_component": False, "mirror": True}),
    ],
)
def test_post_processing_is_the_checkpoints_unless_given(saved, given, used):
    from raysegment.infer.plan import Plan

    metadata = {"model": {"name": "unet", "in_channels": 3, "classes": 1}, **({"postprocess": saved} if saved else {})}
    plan = Plan.build(InferConfig.load(None, model="m", manifest="x", out="o", date="2026-01-01", **given), metadata)
    assert plan.postprocess == used and plan.postprocess_config.model_dump() == used


def test_masks_of_another_post_processing_are_another_model_id():
    from raysegment.infer.plan import Plan

    metadata = {"model": {"name": "unet", "in_channels": 3, "classes": 1}, "postprocess": {"threshold": 0.5, "largest_component": True}}
    ids = {Plan.build(InferConfig.load(None, model="m", manifest="x", out="o", date="2026-01-01", **given), metadata).model_id
           for given in ({}, {"largest_component": True}, {"largest_component": False}, {"threshold": 0.6})}
    assert len(ids) == 3  # the checkpoint's own setting given again is the same run


def test_a_model_retrained_in_place_is_another_model_id(tmp_path):
    """Same architecture, same place, other weights: a re-run must not skip the old model's masks."""
    import torch

    from raysegment.infer.plan import Plan
    from raysegment.models import ModelSpec, read_metadata, save_model

    spec = ModelSpec("unet", 3, 1, {"base_channels": 4, "depth": 2})
    config = InferConfig.load(None, model=str(tmp_path / "m"), manifest="x", out="o", date="2026-01-01")
    ids = []
    for seed in (0, 1, 1):
        torch.manual_seed(seed)
        save_model(str(tmp_path / "m"), spec.build(), spec)
        ids.append(Plan.build(config, read_metadata(str(tmp_path / "m"))).model_id)
    assert ids[0] != ids[1] and ids[1] == ids[2]
