"""The one mixed-precision rule training and inference share."""

from __future__ import annotations

import torch
from torch import nn

from raysegment.models.precision import autocast, autocast_dtype

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_dtypes_per_device():
    assert autocast_dtype("bf16", CPU) is torch.bfloat16 and autocast_dtype("bf16", CUDA) is torch.bfloat16
    assert autocast_dtype("fp16", CUDA) is torch.float16
    assert autocast_dtype("fp16", CPU) is None  # CPU autocast runs bf16 only: full precision instead
    assert autocast_dtype("none", CUDA) is None


def test_bf16_autocast_runs_convolutions_in_bf16_on_cpu():
    conv, x = nn.Conv2d(2, 3, 3), torch.rand(1, 2, 8, 8)
    with autocast("bf16", CPU)():
        assert conv(x).dtype is torch.bfloat16
    with autocast("none", CPU)():
        assert conv(x).dtype is torch.float32
