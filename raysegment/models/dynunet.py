"""nnU-Net's 3D U-Net, as MONAI maintains it (``monai.networks.nets.DynUNet``), planned from the data.

The network is the one nnU-Net trains on MRI volumes: per level two 3x3x3 convolutions with
instance norm and leaky ReLU, strided convolutions down, transposed convolutions up, and optional
deep supervision. Its shape is not fixed but planned, as nnU-Net plans it (:func:`plan_network`):
an axis is halved at a level while it is still at least 8 voxels wide in the patch and its
voxels are not more than twice as long as the finest axis; an axis much coarser than the others
(thick MRI slices) keeps 1-voxel kernels until the others catch up. Widths double per level from
``base_channels`` up to ``max_channels`` (nnU-Net: 32 and 320).

``patch_size`` and ``spacing`` are the data's: ``raysegment train`` fills them from the training
volumes (:mod:`raysegment.planning`) when the job leaves them out, and saves them in the model's
configuration, so the checkpoint rebuilds the same network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from raysegment.errors import ConfigError
from raysegment.models.factory import MODELS


def plan_network(patch_size: Sequence[int], spacing: Sequence[float]) -> tuple[list[list[int]], list[list[int]]]:
    """nnU-Net's kernel sizes and strides for a patch at a voxel spacing (MONAI's DynUNet recipe).

    Returns:
        ``(kernels, strides)``, one ``[k0, k1, k2]`` per level; the first stride is 1 (full resolution).
    Raises:
        ConfigError: an axis of ``patch_size`` does not divide by its strides.
    """
    sizes, spacings = [float(s) for s in patch_size], [float(s) for s in spacing]
    kernels, strides = [], []
    while True:
        ratio = [s / min(spacings) for s in spacings]
        stride = [2 if r <= 2 and n >= 8 else 1 for r, n in zip(ratio, sizes)]
        kernel = [3 if r <= 2 else 1 for r in ratio]
        if all(s == 1 for s in stride):
            break
        if any(n % s for n, s in zip(sizes, stride)):
            raise ConfigError(f"patch_size {list(patch_size)} does not halve evenly at level {len(strides) + 1}: "
                              f"make each axis a multiple of {2 ** (len(strides) + 1)}")
        sizes = [n / s for n, s in zip(sizes, stride)]
        spacings = [p * s for p, s in zip(spacings, stride)]
        kernels.append(kernel)
        strides.append(stride)
    return kernels + [[3] * len(spacing)], [[1] * len(spacing)] + strides


class DeepSupervision3D(nn.Module):
    """DynUNet with its deep-supervision heads returned as a list in training mode.

    MONAI stacks the final output and the heads, upsampled to full size, into one
    ``(N, 1 + heads, C, ...)`` tensor; the loss (:class:`raysegment.losses.DeepSupervisionLoss`)
    takes a list of full-size logits with the final output last, as the 2D models return them. In
    eval mode the network returns the final logits alone.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        out = self.net(x)
        if self.training and out.ndim == x.ndim + 1:
            return list(out.unbind(1))[::-1]
        return out


@MODELS.register("dynunet")
def dynunet(in_channels: int = 1, classes: int = 1, *, patch_size: Sequence[int] = (64, 64, 64),
            spacing: Sequence[float] = (1.0, 1.0, 1.0), base_channels: int = 32, max_channels: int = 320,
            deep_supervision: bool = False, deep_supervision_heads: int = 2, dropout: float | None = None) -> nn.Module:
    """3D U-Net of nnU-Net (MONAI DynUNet), its levels planned from ``patch_size`` and ``spacing``.

    Shape:
        input ``(N, in_channels, D, H, W)``; output ``(N, classes, D, H, W)`` logits (a list of
        them in training mode with ``deep_supervision``). Any input size works at inference: the
        sliding window feeds it ``patch_size`` windows.
    """
    from monai.networks.nets import DynUNet

    if len(patch_size) != 3 or len(spacing) != 3:
        raise ConfigError(f"model 'dynunet': patch_size and spacing need 3 values each, got {list(patch_size)} and {list(spacing)}")
    kernels, strides = plan_network(patch_size, spacing)
    if len(strides) < 3:  # DynUNet needs an input level and at least two poolings
        raise ConfigError(f"model 'dynunet': patch_size {list(patch_size)} is too small to pool twice; make an axis at least 16 voxels")
    filters = [min(base_channels * 2**level, max_channels) for level in range(len(strides))]
    net = DynUNet(spatial_dims=3, in_channels=in_channels, out_channels=classes, kernel_size=kernels, strides=strides,
                  upsample_kernel_size=strides[1:], filters=filters, dropout=dropout, norm_name=("INSTANCE", {"affine": True}),
                  deep_supervision=deep_supervision, deep_supr_num=min(deep_supervision_heads, max(1, len(strides) - 2)),
                  res_block=False)
    return DeepSupervision3D(net)
