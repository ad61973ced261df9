"""Checkpoint directories: round trips (local and S3), DDP prefixes, no downloads, clear errors."""

from __future__ import annotations

import json

import pytest
import segmentation_models_pytorch as smp
import torch
from torch import nn

from raysegment import storage
from raysegment.models import CheckpointError, ModelSpec, load_model, read_metadata, save_model


@pytest.fixture
def spec():
    return ModelSpec("unet", in_channels=2, classes=3, config={"base_channels": 4, "depth": 2})


def trained(spec: ModelSpec) -> nn.Module:
    """A model whose BatchNorm statistics and weights differ from a fresh one."""
    torch.manual_seed(0)
    model = spec.build().train()
    model(torch.randn(4, spec.in_channels, 16, 16))
    return model


def assert_same_outputs(a: nn.Module, b: nn.Module, in_channels: int) -> None:
    x = torch.randn(2, in_channels, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x))


def test_round_trip_with_metadata(tmp_path, spec):
    model = trained(spec)
    uri = str(tmp_path / "ckpt")
    save_model(uri, model, spec, class_names=["wt", "tc", "et"], metrics={"dice": 0.8})
    loaded, metadata = load_model(uri)
    assert not loaded.training
    assert_same_outputs(model, loaded, spec.in_channels)
    assert metadata["format_version"] == 1
    assert metadata["model"] == {"name": "unet", "in_channels": 2, "classes": 3, "config": {"base_channels": 4, "depth": 2}}
    assert metadata["class_names"] == ["wt", "tc", "et"] and metadata["metrics"] == {"dice": 0.8}
    assert read_metadata(uri) == metadata
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["model.json", "model.pt"]


def test_ddp_prefixes_are_stripped(tmp_path, spec):
    model = trained(spec)
    save_model(str(tmp_path / "ckpt"), nn.DataParallel(model), spec)
    state = torch.load(tmp_path / "ckpt" / "model.pt", weights_only=True)
    assert state and not any(key.startswith("module.") for key in state)
    assert all(value.device.type == "cpu" for value in state.values())
    assert_same_outputs(model, load_model(str(tmp_path / "ckpt"))[0], spec.in_channels)


@pytest.mark.s3
def test_round_trip_on_s3(s3_bucket, spec):
    model = trained(spec)
    uri = f"{s3_bucket}/runs/best"
    save_model(uri, model, spec, channels=["t1", "flair"])
    loaded, metadata = load_model(uri)
    assert metadata["channels"] == ["t1", "flair"]
    assert_same_outputs(model, loaded, spec.in_channels)


def test_loading_never_downloads_or_reads_encoder_weights(tmp_path, monkeypatch):
    weights = tmp_path / "encoder.pth"
    torch.save(smp.encoders.get_encoder("resnet18", weights=None).state_dict(), weights)
    spec = ModelSpec("smp-Unet", in_channels=1, classes=1, config={"encoder": "resnet18", "encoder_weights": str(weights)})
    model = spec.build()
    save_model(str(tmp_path / "ckpt"), model, spec)
    weights.unlink()

    def offline(*args, **kwargs):
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(smp.encoders, "hf_hub_download", offline)
    loaded, metadata = load_model(str(tmp_path / "ckpt"))
    assert metadata["model"]["config"]["encoder_weights"] == str(weights)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), loaded(x))

    # the default encoder_weights ("imagenet") must not be fetched either
    default = ModelSpec("smp-FPN", config={"encoder": "resnet18"})
    save_model(str(tmp_path / "fpn"), default.build(pretrained=False), default)
    assert isinstance(load_model(str(tmp_path / "fpn"))[0], smp.FPN)


def test_overwriting_replaces_the_checkpoint(tmp_path, spec):
    uri = str(tmp_path / "ckpt")
    save_model(uri, trained(spec), spec)
    other = ModelSpec("unetpp", in_channels=1, classes=1, config={"base_channels": 4, "depth": 2})
    save_model(uri, other.build(), other)
    assert isinstance(load_model(uri)[0], type(other.build()))


def test_missing_checkpoint_names_the_uri(tmp_path):
    uri = str(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match=f"{uri}: no model.json"):
        load_model(uri)


def test_unfinished_save_is_not_loadable(tmp_path, spec):
    uri = str(tmp_path / "ckpt")
    save_model(uri, trained(spec), spec)
    (tmp_path / "ckpt" / "model.json").unlink()  # a writer that died before the last file
    with pytest.raises(CheckpointError, match="no model.json: not a raysegment checkpoint, or an unfinished save"):
        load_model(uri)


def test_missing_weights(tmp_path, spec):
    uri = str(tmp_path / "ckpt")
    save_model(uri, trained(spec), spec)
    (tmp_path / "ckpt" / "model.pt").unlink()
    with pytest.raises(CheckpointError, match=f"{uri}: no model.pt"):
        load_model(uri)


def test_corrupt_weights(tmp_path, spec):
    uri = str(tmp_path / "ckpt")
    save_model(uri, trained(spec), spec)
    data = (tmp_path / "ckpt" / "model.pt").read_bytes()
    (tmp_path / "ckpt" / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{uri}: model.pt is corrupt"):
        load_model(uri)


def test_weights_that_do_not_fit_the_spec(tmp_path, spec):
    uri = str(tmp_path / "ckpt")
    save_model(uri, trained(spec), spec)
    document = json.loads((tmp_path / "ckpt" / "model.json").read_text())
    document["model"]["config"]["base_channels"] = 8
    (tmp_path / "ckpt" / "model.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="model.pt does not fit model 'unet'"):
        load_model(uri)


@pytest.mark.parametrize(
    "content,problem",
    [
        ("{not json", "model.json is not valid JSON"),
        (json.dumps({"format_version": 2, "model": {"name": "unet"}}), "format_version 2"),
        (json.dumps({"format_version": 1}), "no valid 'model' entry"),
        (json.dumps({"format_version": 1, "model": {"name": "unet9"}}), "model 'unet9' is not registered"),
    ],
)
def test_bad_model_json(tmp_path, content, problem):
    storage.write_bytes(str(tmp_path / "ckpt" / "model.json"), content.encode())
    with pytest.raises(CheckpointError, match=problem):
        load_model(str(tmp_path / "ckpt"))


def test_metadata_must_be_json_and_not_reserved(tmp_path, spec):
    model = spec.build()
    with pytest.raises(CheckpointError, match="not JSON-serialisable"):
        save_model(str(tmp_path / "a"), model, spec, tensor=torch.zeros(1))
    with pytest.raises(CheckpointError, match="reserved"):
        save_model(str(tmp_path / "b"), model, spec, format_version=2)
    assert not storage.exists(str(tmp_path / "a" / "model.json"))
