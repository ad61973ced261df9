"""Every registered model: output shape, channel handling, parameter counts; registry errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from raysegment.errors import ConfigError
from raysegment.models import count_parameters, create_model, list_models, model_description, model_options

CHANNELS = [(1, 1), (3, 3), (4, 3)]  # covers in_channels 1, 3, 4 and classes 1, 3
#: The input of a model's tests: 2D slices of 64 px, or a 3D model's own patch.
SPATIAL = {"dynunet": (16, 16, 16)}


def spatial(name: str) -> tuple[int, ...]:
    return SPATIAL.get(name, (64, 64))


def convs(model: nn.Module) -> list[nn.Conv2d | nn.Conv3d]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)) and not isinstance(m, (nn.ConvTranspose2d, nn.ConvTranspose3d))]


def test_registry_lists_every_family():
    names = list_models()
    assert {"unet", "unetpp", "transunet"} <= set(names)
    assert {f"smp-{a}" for a in ("Unet", "UnetPlusPlus", "DeepLabV3Plus", "FPN", "MAnet")} <= set(names)
    assert names == sorted(names)
    assert all(model_description(name) for name in names)


def test_every_model_has_a_tiny_test_config(tiny):
    for name in list_models():
        assert isinstance(tiny(name), dict)


@pytest.mark.parametrize("in_channels,classes", CHANNELS)
@pytest.mark.parametrize("name", list_models())
def test_forward_shape_and_channels(name, in_channels, classes, tiny):
    torch.manual_seed(0)
    model = create_model(name, in_channels=in_channels, classes=classes, **tiny(name)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, *spatial(name)))
    assert out.shape == (2, classes, *spatial(name))
    assert torch.isfinite(out).all()
    assert convs(model)[0].in_channels == in_channels
    assert convs(model)[-1].out_channels == classes


@pytest.mark.parametrize("name", list_models())
def test_parameter_count_follows_channels(name, tiny):
    """Only the first convolution depends on in_channels and only the head on classes."""
    base = create_model(name, in_channels=1, classes=1, **tiny(name))
    more_in = create_model(name, in_channels=4, classes=1, **tiny(name))
    more_out = create_model(name, in_channels=1, classes=3, **tiny(name))
    first, head = convs(base)[0], convs(base)[-1]
    assert count_parameters(more_in) - count_parameters(base) == 3 * first.out_channels * math.prod(first.kernel_size)
    head_per_class = head.in_channels * math.prod(head.kernel_size) + (head.bias is not None)
    assert count_parameters(more_out) - count_parameters(base) == 2 * head_per_class
    assert count_parameters(base) == sum(p.numel() for p in base.parameters())


def test_count_parameters_trainable_only(tiny):
    model = create_model("unet", **tiny("unet"))
    total = count_parameters(model)
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    frozen = sum(p.numel() for p in model.encoder.parameters())
    assert count_parameters(model) == total
    assert count_parameters(model, trainable_only=True) == total - frozen > 0


def test_meta_device_build_counts_like_a_real_build(tiny):
    with torch.device("meta"):
        meta = create_model("transunet", **tiny("transunet"))
    assert count_parameters(meta) == count_parameters(create_model("transunet", **tiny("transunet")))


def test_unknown_model_lists_valid_names():
    with pytest.raises(KeyError, match="unknown model 'nope'.*smp-Unet.*unet"):
        create_model("nope")


def test_unknown_option_lists_valid_options():
    with pytest.raises(ConfigError, match="'widht'.*valid: base_channels, depth"):
        create_model("unet", widht=3)
    assert model_options("unetpp") == {"base_channels": 32, "depth": 4, "deep_supervision": False, "encoder": None,
                                       "encoder_weights": "imagenet", "freeze_encoder_stages": 0}


def test_bad_channel_counts_are_config_errors():
    with pytest.raises(ConfigError, match="in_channels and classes"):
        create_model("unet", in_channels=0)
