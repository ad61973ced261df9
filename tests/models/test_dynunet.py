"""The 3D U-Net (MONAI DynUNet), planned from patch size and spacing as nnU-Net plans it."""

from __future__ import annotations

import pytest
import torch

from raysegment.errors import ConfigError
from raysegment.models import ModelSpec, count_parameters, create_model
from raysegment.models.dynunet import plan_network

#: Kernels and strides worked out by hand from nnU-Net's rules (halve an axis while it is >= 8 voxels
#: and its voxels are at most twice the finest; 1-voxel kernels along an axis more than twice as coarse).
NNUNET_PLANS = {
    # Task04 hippocampus: patch 40x56x40 at 1 mm isotropic.
    ((40, 56, 40), (1.0, 1.0, 1.0)): ([[3, 3, 3]] * 4, [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]),
    # Task01 brain tumour: 128^3 at 1 mm.
    ((128, 128, 128), (1.0, 1.0, 1.0)): ([[3, 3, 3]] * 6, [[1, 1, 1]] + [[2, 2, 2]] * 5),
    # Prostate-like 20x320x256 at 3.6 x 0.62 x 0.62 mm: the thick axis keeps 1-voxel kernels and is not
    # pooled until the in-plane voxels are coarse enough, and stops pooling at 5 voxels.
    ((20, 320, 256), (3.6, 0.62, 0.62)): (
        [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
        [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2], [1, 2, 2]],
    ),
}


@pytest.mark.parametrize("patch,spacing", list(NNUNET_PLANS), ids=["hippocampus", "brats", "prostate"])
def test_levels_follow_nnunet_planning(patch, spacing):
    assert plan_network(patch, spacing) == NNUNET_PLANS[(patch, spacing)]


def test_a_patch_that_does_not_halve_evenly_is_a_config_error():
    with pytest.raises(ConfigError, match="multiple of"):
        plan_network((36, 56, 40), (1.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="too small to pool twice"):
        create_model("dynunet", patch_size=(8, 8, 8))


def test_shapes_deep_supervision_and_any_input_size_at_inference():
    torch.manual_seed(0)
    model = create_model("dynunet", in_channels=2, classes=3, patch_size=(16, 16, 8), spacing=(1.0, 1.0, 2.0),
                         base_channels=4, max_channels=8, deep_supervision=True)
    x = torch.randn(2, 2, 16, 16, 8)
    model.train()
    heads = model(x)
    assert isinstance(heads, list) and len(heads) == 2 and all(h.shape == (2, 3, 16, 16, 8) for h in heads)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 3, 16, 16, 8)
        # The final output comes last in the training list, as the loop scores ``outputs[-1]``.
        model.train()
        torch.testing.assert_close(model(x)[-1], model.net(x)[:, 0])
    # Widths double per level from base_channels and stop at max_channels.
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    assert max(c.out_channels for c in convs) == 8 and convs[0].out_channels == 4


def test_checkpoint_spec_rebuilds_the_same_network():
    spec = ModelSpec("dynunet", in_channels=1, classes=2, config={"patch_size": [40, 56, 40], "spacing": [1, 1, 1], "base_channels": 8})
    a, b = spec.build(), ModelSpec.from_dict(spec.to_dict()).build()
    assert count_parameters(a) == count_parameters(b) > 0
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
