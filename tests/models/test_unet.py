"""The classic U-Net: parameter counts against a closed form and the published figures."""

from __future__ import annotations

import pytest
import torch

from raysegment.errors import ConfigError
from raysegment.models import count_parameters, create_model


def double_conv(cin: int, cout: int) -> int:
    # two bias-free 3x3 convolutions, each followed by a BatchNorm (weight + bias)
    return 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout


def unet_parameters(in_channels: int, classes: int, base: int, depth: int) -> int:
    w = [base * 2**level for level in range(depth + 1)]
    encoder = double_conv(in_channels, w[0]) + sum(double_conv(w[i - 1], w[i]) for i in range(1, depth + 1))
    up = sum(4 * w[i + 1] * w[i] + w[i] for i in range(depth))  # 2x2 transposed conv + bias
    decoder = sum(double_conv(2 * w[i], w[i]) for i in range(depth))
    return encoder + up + decoder + w[0] * classes + classes


@pytest.mark.parametrize("in_channels,classes,base,depth", [(3, 1, 64, 4), (1, 3, 8, 3), (4, 2, 16, 2)])
def test_parameter_count_matches_closed_form(in_channels, classes, base, depth):
    with torch.device("meta"):
        model = create_model("unet", in_channels=in_channels, classes=classes, base_channels=base, depth=depth)
    assert count_parameters(model) == unet_parameters(in_channels, classes, base, depth)


def test_published_sizes():
    with torch.device("meta"):
        classic = create_model("unet", base_channels=64)  # 3 input channels, 1 class, base 64, depth 4
        lgg = create_model("unet")  # the default width
    # ~31.0M for the classic configuration (3-channel input, 1 output class): 31,037,633
    assert round(count_parameters(classic) / 1e6, 1) == 31.0
    # base 32 is the U-Net of Zhou et al.'s U-Net++ comparison (7.76M) and of the public LGG model
    assert count_parameters(lgg) == 7_763_041


def test_any_size_divisible_by_two_to_the_depth():
    model = create_model("unet", base_channels=4, depth=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 40, 24)).shape == (1, 1, 40, 24)
    with pytest.raises(ConfigError, match="unet: input size 36x24 is not divisible by 8"):
        model(torch.randn(1, 3, 36, 24))


def test_skip_connections_carry_encoder_features():
    """The decoder sees the encoder feature of its own level: concatenation doubles its input."""
    model = create_model("unet", base_channels=4, depth=3)
    assert [block[0][0].in_channels for block in model.decoder] == [32, 16, 8]


def test_without_normalisation_it_is_the_keras_unet_of_seed_004():
    """``norm="none"``: convolutions with biases, no BatchNorm, as Ronneberger et al. and the Keras
    ``get_unet`` of seed report 004 (jocicmarko/ultrasound-nerve-segmentation, whose model summary
    prints 7,759,521 parameters for 1 channel in and 1 out)."""
    model = create_model("unet", in_channels=1, classes=1, base_channels=32, depth=4, norm="none")
    assert count_parameters(model) == 7_759_521
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert all(m.bias is not None for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    instance = create_model("unet", in_channels=3, classes=1, base_channels=4, depth=2, norm="instance")
    assert any(isinstance(m, torch.nn.InstanceNorm2d) for m in instance.modules())
    assert instance(torch.zeros(2, 3, 16, 16)).shape == (2, 1, 16, 16)
    with pytest.raises(ConfigError, match="norm must be one of"):
        create_model("unet", base_channels=4, depth=2, norm="group")
