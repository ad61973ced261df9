"""U-Net++: nested dense connectivity, deep-supervision contract, published size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from raysegment.errors import ConfigError
from raysegment.models import count_parameters, create_model


def test_node_inputs_are_all_same_level_predecessors_plus_the_node_below():
    base, depth = 4, 3
    model = create_model("unetpp", base_channels=base, depth=depth)
    for level in range(depth + 1):
        for j in range(1, depth - level + 1):
            first_conv = model.nodes[model.key(level, j)][0][0]
            # X[level][0..j-1] and Up(X[level+1][j-1]) each carry base * 2**level channels
            assert first_conv.in_channels == (j + 1) * base * 2**level, (level, j)


def test_every_top_node_receives_all_earlier_top_nodes():
    """Gradient check: X[0][j] depends on every X[0][k<j] (dense skips), as U-Net++ requires."""
    depth = 3
    model = create_model("unetpp", base_channels=4, depth=depth)
    outputs = {}
    for j in range(depth + 1):
        model.nodes[model.key(0, j)].register_forward_hook(lambda m, args, out, j=j: outputs.__setitem__(j, out))
    model(torch.randn(1, 3, 16, 16))
    for j in range(1, depth + 1):
        grads = torch.autograd.grad(outputs[j].sum(), [outputs[k] for k in range(j)], retain_graph=True, allow_unused=True)
        assert all(g is not None and g.abs().sum() > 0 for g in grads), j


def test_deep_supervision_lists_in_training_and_final_in_eval():
    depth = 3
    model = create_model("unetpp", classes=2, base_channels=4, depth=depth, deep_supervision=True)
    x = torch.randn(2, 3, 32, 32)
    model.train()
    for m in model.modules():  # same BatchNorm statistics in both modes, so outputs can be compared
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    outputs = model(x)
    assert isinstance(outputs, list) and len(outputs) == depth
    assert all(o.shape == (2, 2, 32, 32) for o in outputs)
    assert not torch.allclose(outputs[0], outputs[-1])
    model.eval()
    final = model(x)
    assert isinstance(final, torch.Tensor)
    torch.testing.assert_close(final, outputs[-1])


def test_without_deep_supervision_training_returns_a_tensor():
    model = create_model("unetpp", base_channels=4, depth=2).train()
    assert isinstance(model(torch.randn(2, 3, 16, 16)), torch.Tensor)


def test_published_size():
    with torch.device("meta"):
        plain = create_model("unetpp")
        supervised = create_model("unetpp", deep_supervision=True)
    assert abs(count_parameters(plain) / 1e6 - 9.04) < 0.01  # Zhou et al. 2018, Table 2: 9.04M
    # deep supervision adds depth - 1 extra 1x1 heads on 32 channels
    assert count_parameters(supervised) - count_parameters(plain) == 3 * (32 + 1)


def test_input_size_checked():
    with pytest.raises(ConfigError, match="divisible by 16"):
        create_model("unetpp", base_channels=4)(torch.randn(1, 3, 24, 24))
