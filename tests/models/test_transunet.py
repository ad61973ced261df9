"""TransUNet: CNN skips reach the decoder, any size divisible by 16, published size."""

from __future__ import annotations

import pytest
import torch

from raysegment.errors import ConfigError
from raysegment.models import count_parameters, create_model


@pytest.fixture
def model(tiny):
    torch.manual_seed(0)
    return create_model("transunet", in_channels=2, classes=2, **tiny("transunet")).eval()


def test_cnn_features_at_half_quarter_eighth_sixteenth(model):
    features = model.cnn(torch.randn(1, 2, 64, 64))
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4]
    assert model.cnn.feature_info.channels() == [8, 16, 32, 64]


def test_decoder_blocks_take_cnn_skips(model):
    # block inputs: previous decoder channels + skip channels (1/8: 32, 1/4: 16, 1/2: 8, last: none)
    in_channels = [block.conv[0][0].in_channels for block in model.decoder]
    assert in_channels == [32 + 32, 32 + 16, 16 + 8, 8]


@pytest.mark.parametrize("skip", [0, 1, 2])  # CNN feature index: 1/2, 1/4, 1/8
def test_zeroing_a_skip_changes_the_output(model, skip):
    x = torch.randn(1, 2, 64, 64)
    with torch.no_grad():
        reference = model(x)
        handle = model.cnn.register_forward_hook(lambda m, args, out: [f * 0 if i == skip else f for i, f in enumerate(out)])
        changed = model(x)
        handle.remove()
    assert not torch.allclose(reference, changed)


def test_n_skip_limits_the_skips_used(tiny):
    model = create_model("transunet", **{**tiny("transunet"), "n_skip": 1}).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)
        model.cnn.register_forward_hook(lambda m, args, out: [out[0] * 0, out[1] * 0, out[2], out[3]])
        torch.testing.assert_close(model(x), reference)  # the 1/2 and 1/4 features are not used


def test_position_embedding_is_resampled_for_other_sizes(model):
    assert model.pos_embed.shape == (1, 16, 32)  # 64 / 16 = 4x4 grid
    with torch.no_grad():
        assert model(torch.randn(1, 2, 96, 128)).shape == (1, 2, 96, 128)
    with pytest.raises(ConfigError, match="divisible by 16"):
        model(torch.randn(1, 2, 72, 64))


def test_published_size():
    with torch.device("meta"):
        model = create_model("transunet", in_channels=3, classes=9)  # Synapse configuration
    assert round(count_parameters(model) / 1e6, 2) == 105.28


def test_backbone_needs_three_stages():
    with pytest.raises(ConfigError, match="3 entries"):
        create_model("transunet", cnn_layers=(1, 1))
