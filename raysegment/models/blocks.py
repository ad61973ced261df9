"""Building blocks shared by the hand-written models (U-Net, U-Net++, TransUNet's decoder)."""

from __future__ import annotations

import torch
from torch import nn

from raysegment.errors import ConfigError

#: Normalisations a block can put after its convolution: BatchNorm (the default), InstanceNorm
#: (nnU-Net's choice for small batches), or none (Ronneberger et al.'s original U-Net).
NORMS = {"batch": nn.BatchNorm2d, "instance": lambda channels: nn.InstanceNorm2d(channels, affine=True), "none": None}


class ConvBNReLU(nn.Sequential):
    """3x3 convolution -> normalisation (BatchNorm by default, :data:`NORMS`) -> ReLU, size preserving."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch"):
        if norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        layers = [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=norm == "none")]  # a norm has its own bias
        if NORMS[norm] is not None:
            layers.append(NORMS[norm](out_channels))
        super().__init__(*layers, nn.ReLU(inplace=True))


class DoubleConv(nn.Sequential):
    """The U-Net unit: two :class:`ConvBNReLU` in a row."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch"):
        super().__init__(ConvBNReLU(in_channels, out_channels, norm), ConvBNReLU(out_channels, out_channels, norm))


def up_conv(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    """Learned x2 upsampling (2x2 transposed convolution, stride 2)."""
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)


def widths(base_channels: int, depth: int) -> list[int]:
    """Channels per resolution level: ``base * 2**level`` for levels ``0..depth``."""
    if base_channels < 1 or depth < 1:
        raise ConfigError(f"base_channels and depth must be >= 1, got {base_channels} and {depth}")
    return [base_channels * 2**level for level in range(depth + 1)]


def check_input_size(x: torch.Tensor, factor: int, model: str) -> None:
    """Raise a ConfigError unless the spatial size of ``x`` is divisible by ``factor``.

    A size the encoder cannot halve evenly would otherwise fail deep inside ``torch.cat`` with a
    shape message that does not say what to change.
    """
    height, width = x.shape[-2:]
    if height % factor or width % factor:
        raise ConfigError(
            f"{model}: input size {height}x{width} is not divisible by {factor}; pad or resize the images to a multiple of {factor}"
        )
