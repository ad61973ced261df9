"""``raysegment models``: every registered model with its parameter count, without downloads."""

from __future__ import annotations

import json

import segmentation_models_pytorch as smp
from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.models import count_parameters, create_model, list_models


def offline(*args, **kwargs):
    raise AssertionError("tried to download weights")


def test_table_lists_every_model(monkeypatch):
    monkeypatch.setattr(smp.encoders, "hf_hub_download", offline)
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for name in list_models():
        assert name in result.output
    assert "7,763,041" in result.output  # the default U-Net (base 32, Buda et al.'s LGG model)


def test_json_counts_match_built_models(monkeypatch):
    monkeypatch.setattr(smp.encoders, "hf_hub_download", offline)
    result = CliRunner().invoke(app, ["models", "--json", "--in-channels", "4", "--classes", "3"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert sorted(rows) == list_models()
    assert rows["unet"]["parameters"] == count_parameters(create_model("unet", in_channels=4, classes=3))
    smp_unet = create_model("smp-Unet", in_channels=4, classes=3, encoder_weights=None)
    assert rows["smp-Unet"]["parameters"] == count_parameters(smp_unet)
    assert rows["unetpp"]["options"] == {"base_channels": 32, "depth": 4, "deep_supervision": False, "encoder": None,
                                         "encoder_weights": "imagenet", "freeze_encoder_stages": 0}
    assert all(row["description"] for row in rows.values())
