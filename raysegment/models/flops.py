"""Model FLOPs and model FLOP utilisation (MFU): the GPU figures of the throughput benchmarks.

FLOPs are counted by ``torch.utils.flop_counter`` on one real forward pass (one multiply-add = 2
FLOPs), as PyTorch's own MFU tooling does; a training step is taken as 3 forward passes (the
backward pass costs about twice the forward), the convention of the PaLM/Megatron MFU papers.
"""

from __future__ import annotations

import torch
from torch import nn

#: Dense (no sparsity) bf16 tensor-core peak per GPU, TFLOP/s, from NVIDIA's data sheets; the
#: first name fragment found in ``torch.cuda.get_device_name()`` wins.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM / HBM3
    ("H200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


def forward_flops(model: nn.Module, sample: torch.Tensor) -> int:
    """FLOPs of one forward pass of ``model`` on ``sample`` (counted, not estimated)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(sample)
    return int(counter.get_total_flops())


def peak_bf16_flops(device_name: str) -> float | None:
    """The bf16 peak in FLOP/s of a GPU by its CUDA device name; None for a GPU not in the table."""
    for fragment, tflops in PEAK_BF16_TFLOPS:
        if fragment.lower() in device_name.lower():
            return tflops * 1e12
    return None


def mfu(flops_per_item: float, items_per_second: float, device_name: str) -> float | None:
    """Achieved model FLOP/s over the device's bf16 peak; None when the peak is unknown."""
    peak = peak_bf16_flops(device_name)
    return None if peak is None else flops_per_item * items_per_second / peak
