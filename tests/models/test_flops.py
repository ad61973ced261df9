"""FLOP counting against the closed-form count of a convolution, and the MFU arithmetic."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from raysegment.models.flops import forward_flops, mfu, peak_bf16_flops


def test_a_convolution_costs_two_flops_per_multiply_add():
    conv = nn.Conv2d(4, 8, kernel_size=3, padding=1, bias=False)
    # 8 output channels x 32 x 32 positions x (4 x 3 x 3) multiply-adds, 2 FLOPs each
    assert forward_flops(conv, torch.rand(2, 4, 32, 32)) == 2 * 2 * 8 * 32 * 32 * 4 * 3 * 3


@pytest.mark.parametrize("name, tflops", [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0),
                                          ("NVIDIA H200", 989.0), ("NVIDIA A100-SXM4-40GB", 312.0), ("NVIDIA L4", 121.0)])
def test_peaks_follow_the_device_name(name, tflops):
    assert peak_bf16_flops(name) == tflops * 1e12


def test_mfu_is_achieved_over_peak_and_unknown_without_a_peak():
    assert mfu(1e9, 98_900.0, "NVIDIA H100 80GB HBM3") == pytest.approx(0.1)
    assert mfu(1e9, 1.0, "Some Future GPU") is None
