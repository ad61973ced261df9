"""``unet`` and ``unetpp`` on their classic encoder (unchanged networks) or on any smp/timm encoder."""

from __future__ import annotations

import pytest
import segmentation_models_pytorch as smp
import torch

from raysegment.errors import ConfigError
from raysegment.models import ModelSpec, count_parameters, create_model, load_model, model_options, save_model
from raysegment.models.unet import UNet
from raysegment.models.unetpp import UNetPlusPlus

CLASSIC = {"unet": UNet, "unetpp": UNetPlusPlus}
SMP_ARCH = {"unet": "Unet", "unetpp": "UnetPlusPlus"}


def offline(*args, **kwargs):
    raise AssertionError("tried to download weights")


@pytest.mark.parametrize("name", ["unet", "unetpp"])
@pytest.mark.parametrize("encoder", [{}, {"encoder": None}, {"encoder": "classic"}])
def test_classic_encoder_is_the_same_network_as_before(name, encoder):
    with torch.device("meta"):
        default = create_model(name, **encoder)
        small = create_model(name, in_channels=4, classes=3, base_channels=8, depth=3, **encoder)
    assert type(default) is CLASSIC[name]
    # the published sizes the classic networks had before encoders existed
    assert count_parameters(default) == {"unet": 7_763_041, "unetpp": 9_045_825}[name]
    with torch.device("meta"):
        same = CLASSIC[name](in_channels=4, classes=3, base_channels=8, depth=3)
    assert list(small.state_dict()) == list(same.state_dict())  # existing checkpoints still load
    assert count_parameters(small) == count_parameters(same)


def test_a_classic_checkpoint_loads_with_and_without_the_encoder_key(tmp_path):
    torch.manual_seed(0)
    spec = ModelSpec("unetpp", in_channels=1, classes=1, config={"base_channels": 4, "depth": 2, "deep_supervision": True})
    model = spec.build()
    save_model(str(tmp_path / "old"), model, spec)
    loaded, _ = load_model(str(tmp_path / "old"))
    x = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    spec.config["encoder"] = "classic"
    save_model(str(tmp_path / "new"), model, spec)
    torch.testing.assert_close(load_model(str(tmp_path / "new"))[0](x), loaded(x))


@pytest.mark.parametrize("name", ["unet", "unetpp"])
def test_an_smp_encoder_gives_smps_network_with_a_forward_of_the_right_shape(name, monkeypatch):
    monkeypatch.setattr(smp.encoders, "hf_hub_download", offline)
    model = create_model(name, in_channels=4, classes=2, encoder="resnet34", encoder_weights=None).eval()
    reference = smp.create_model(SMP_ARCH[name], encoder_name="resnet34", encoder_weights=None, in_channels=4, classes=2)
    assert type(model) is type(reference) and count_parameters(model) == count_parameters(reference)
    with torch.no_grad():
        out = model(torch.randn(2, 4, 64, 64))
    assert out.shape == (2, 2, 64, 64) and torch.isfinite(out).all()
    # the same builder as smp-<Arch>: its options pass through, weights and freezing included
    narrow = create_model(name, encoder="tu-test_resnet", encoder_weights=None, decoder_channels=(32, 16, 8, 8, 4),
                          freeze_encoder_stages=1)
    assert narrow.segmentation_head[0].in_channels == 4
    assert not all(p.requires_grad for p in narrow.encoder.parameters())


def test_loading_never_downloads_encoder_weights(monkeypatch, tmp_path):
    monkeypatch.setattr(smp.encoders, "hf_hub_download", offline)
    spec = ModelSpec("unet", in_channels=3, classes=1, config={"encoder": "resnet34"})  # encoder_weights: imagenet by default
    assert model_options("unet")["encoder_weights"] == "imagenet"
    model = spec.build(pretrained=False)
    save_model(str(tmp_path / "m"), model, spec)
    assert type(load_model(str(tmp_path / "m"))[0]) is smp.Unet


def test_options_of_the_other_encoder_are_refused():
    with pytest.raises(ConfigError, match=r"unetpp: deep_supervision=True applies to the classic encoder only, not to encoder 'resnet34'"):
        create_model("unetpp", encoder="resnet34", encoder_weights=None, deep_supervision=True)
    with pytest.raises(ConfigError, match=r"unet: base_channels=16 applies to the classic encoder only"):
        create_model("unet", encoder="vgg16", encoder_weights=None, base_channels=16)
    with pytest.raises(ConfigError, match=r"unet: encoder_weights='w.pt' applies to smp/timm encoders only"):
        create_model("unet", encoder_weights="w.pt")
    with pytest.raises(ConfigError, match=r"'decoder_channels' with the classic encoder; valid: base_channels, depth, norm, encoder"):
        create_model("unet", decoder_channels=(8,))
    with pytest.raises(ConfigError, match=r"unetpp: unknown encoder 'resnet35'"):
        create_model("unetpp", encoder="resnet35", encoder_weights=None)
    with pytest.raises(ConfigError, match=r"model 'unet' has no option 'decoder_chanels'; valid: encoder, encoder_weights"):
        create_model("unet", encoder="resnet34", encoder_weights=None, decoder_chanels=(8,))
    # the classic options at their defaults go with any encoder (a base job may spell them out)
    create_model("unet", encoder="tu-test_resnet", encoder_weights=None, base_channels=32, depth=4)
