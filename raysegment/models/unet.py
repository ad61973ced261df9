"""The classic U-Net (Ronneberger et al. 2015) with BatchNorm and same-padding convolutions.

Each level is a :class:`~raysegment.models.blocks.DoubleConv`; the encoder halves the resolution
with 2x2 max pooling, the decoder doubles it with a 2x2 transposed convolution and concatenates the
encoder feature of the same level (skip connection). This is also the layout of the best public
LGG model (mateuszbuda/brain-segmentation-pytorch, ``base_channels=32``).

Sizes with 3 input channels and 1 class: 7,763,041 parameters at the defaults (``base_channels=32``:
Buda et al.'s LGG U-Net and the 7.76M U-Net of the U-Net++ paper), 31,037,633 at Ronneberger et
al.'s ``base_channels=64`` (the published ~31.0M). The default is the width the field trains on
brain MRI: four times cheaper than 64 for no loss of Dice on LGG (Buda et al.).

``encoder`` (registered builder :func:`unet`): ``classic`` (or None, the default) is this network;
any smp/timm encoder name (``resnet34``, ``vgg16``, ``efficientnet-b0``, ``tu-<timm name>``)
gives smp's U-Net decoder on that encoder instead, with ``encoder_weights`` (``imagenet`` by
default), ``freeze_encoder_stages`` and smp's own options, as ``smp-Unet`` takes them
(:mod:`raysegment.models.smp_models`); ``base_channels``, ``depth`` and ``norm`` belong to this network alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from raysegment.models.blocks import DoubleConv, check_input_size, up_conv, widths
from raysegment.models.factory import MODELS
from raysegment.models.smp_models import build_with_encoder


class UNet(nn.Module):
    """Classic U-Net: double 3x3 conv + BatchNorm + ReLU, max-pool down, transposed-conv up.

    ``depth`` down-samplings, ``base_channels * 2**level`` channels at each level; ``norm``
    ``"none"`` drops the BatchNorm, as Ronneberger et al.'s U-Net had none (``"instance"``: nnU-Net's).

    Shape:
        input ``(N, in_channels, H, W)`` with H and W divisible by ``2**depth``;
        output ``(N, classes, H, W)`` logits.
    """

    def __init__(self, in_channels: int = 3, classes: int = 1, base_channels: int = 32, depth: int = 4, norm: str = "batch"):
        super().__init__()
        chs = widths(base_channels, depth)
        self.depth = depth
        self.encoder = nn.ModuleList([DoubleConv(in_channels, chs[0], norm)])
        self.encoder.extend(DoubleConv(chs[level - 1], chs[level], norm) for level in range(1, depth + 1))
        self.pool = nn.MaxPool2d(2)
        # decoder modules are stored deepest first, the order in which forward uses them
        self.up = nn.ModuleList(up_conv(chs[level + 1], chs[level]) for level in reversed(range(depth)))
        self.decoder = nn.ModuleList(DoubleConv(2 * chs[level], chs[level], norm) for level in reversed(range(depth)))
        self.head = nn.Conv2d(chs[0], classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, 2**self.depth, "unet")
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(self.pool(x) if level else x)
            skips.append(x)
        x = skips.pop()
        for up, block in zip(self.up, self.decoder):
            x = block(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


@MODELS.register("unet")
def unet(
    in_channels: int = 3,
    classes: int = 1,
    base_channels: int = 32,
    depth: int = 4,
    norm: str = "batch",
    encoder: str | None = None,
    encoder_weights: str | None = "imagenet",
    freeze_encoder_stages: int = 0,
    **options: Any,
) -> nn.Module:
    """Classic U-Net (base_channels, depth, norm), or smp's U-Net decoder on any smp/timm encoder."""
    return build_with_encoder("unet", "Unet", UNet, in_channels, classes, encoder, base_channels=base_channels, depth=depth, norm=norm,
                              encoder_weights=encoder_weights, freeze_encoder_stages=freeze_encoder_stages, **options)
