"""U-Net++ (Zhou et al. 2018): U-Net with nested, dense skip pathways and optional deep supervision.

Node ``X[i][j]`` sits at resolution level ``i`` (``base_channels * 2**i`` channels) and skip
depth ``j``. The backbone column ``X[i][0]`` is a U-Net encoder; every other node is::

    X[i][j] = H([X[i][0], ..., X[i][j-1], Up(X[i+1][j-1])])

with ``H`` a :class:`~raysegment.models.blocks.DoubleConv` and ``Up`` a 2x2 transposed convolution
(one per node, as in the authors' implementation). The final output comes from ``X[0][depth]``.

Deep supervision puts a 1x1 head on each of ``X[0][1..depth]``. In training mode the forward then
returns the list of their full-resolution logits, shallowest path first and the final output last
(train with :class:`raysegment.losses.DeepSupervisionLoss`); in eval mode it always returns the
final logits alone, so evaluation and inference code never see a list.

At the defaults (base 32, depth 4, 3 input channels, 1 class) it has 9,045,825 parameters, the
9.04M of the paper.

``encoder`` (registered builder :func:`unetpp`): ``classic`` (or None, the default) is this
network; any smp/timm encoder name gives ``smp.UnetPlusPlus`` on that encoder, with the options of
``smp-UnetPlusPlus`` (see :func:`raysegment.models.smp_models.build_with_encoder`). Deep supervision
is this network's alone: asking for it with another encoder is a ConfigError.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from raysegment.models.blocks import DoubleConv, check_input_size, up_conv, widths
from raysegment.models.factory import MODELS
from raysegment.models.smp_models import build_with_encoder


class UNetPlusPlus(nn.Module):
    """U-Net++: nested dense skip pathways, optional deep supervision (Zhou et al. 2018).

    ``depth`` down-samplings, ``base_channels * 2**level`` channels at each level (32 as published).

    Shape:
        input ``(N, in_channels, H, W)`` with H and W divisible by ``2**depth``;
        output ``(N, classes, H, W)`` logits, or in training mode with deep supervision a list of
        ``depth`` such tensors.
    """

    def __init__(
        self,
        in_channels: int = 3,
        classes: int = 1,
        base_channels: int = 32,
        depth: int = 4,
        deep_supervision: bool = False,
    ):
        super().__init__()
        chs = widths(base_channels, depth)
        self.depth = depth
        self.deep_supervision = deep_supervision
        self.pool = nn.MaxPool2d(2)
        self.nodes = nn.ModuleDict()
        self.ups = nn.ModuleDict()
        for level in range(depth + 1):
            self.nodes[self.key(level, 0)] = DoubleConv(chs[level - 1] if level else in_channels, chs[level])
        for j in range(1, depth + 1):
            for level in range(depth - j + 1):
                self.ups[self.key(level, j)] = up_conv(chs[level + 1], chs[level])
                # j same-level predecessors plus the upsampled node below, each with chs[level] channels
                self.nodes[self.key(level, j)] = DoubleConv((j + 1) * chs[level], chs[level])
        n_heads = depth if deep_supervision else 1
        self.heads = nn.ModuleList(nn.Conv2d(chs[0], classes, kernel_size=1) for _ in range(n_heads))

    @staticmethod
    def key(level: int, j: int) -> str:
        """Name of node ``X[level][j]`` in ``self.nodes`` and ``self.ups``."""
        return f"x{level}_{j}"

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        check_input_size(x, 2**self.depth, "unetpp")
        grid: list[list[torch.Tensor]] = []
        for level in range(self.depth + 1):
            x = self.nodes[self.key(level, 0)](self.pool(x) if level else x)
            grid.append([x])
        for j in range(1, self.depth + 1):
            for level in range(self.depth - j + 1):
                below = self.ups[self.key(level, j)](grid[level + 1][j - 1])
                grid[level].append(self.nodes[self.key(level, j)](torch.cat([*grid[level], below], dim=1)))
        if not self.deep_supervision:
            return self.heads[0](grid[0][self.depth])
        if not self.training:
            return self.heads[-1](grid[0][self.depth])
        return [head(grid[0][j]) for j, head in enumerate(self.heads, start=1)]


@MODELS.register("unetpp")
def unetpp(
    in_channels: int = 3,
    classes: int = 1,
    base_channels: int = 32,
    depth: int = 4,
    deep_supervision: bool = False,
    encoder: str | None = None,
    encoder_weights: str | None = "imagenet",
    freeze_encoder_stages: int = 0,
    **options: Any,
) -> nn.Module:
    """U-Net++ with nested dense skips and optional deep supervision, or smp's U-Net++ on any smp/timm encoder."""
    return build_with_encoder("unetpp", "UnetPlusPlus", UNetPlusPlus, in_channels, classes, encoder,
                              base_channels=base_channels, depth=depth, deep_supervision=deep_supervision,
                              encoder_weights=encoder_weights, freeze_encoder_stages=freeze_encoder_stages, **options)
