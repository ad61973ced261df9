"""The forward pass both ``evaluate`` and ``infer`` run: preprocessed slices -> label probabilities.

One function, so the figures ``evaluate`` reports come from the same computation as the masks
``infer`` writes (same batch sizes, precision and test-time mirroring); what happens after it (back
to the input grid, post-processing) is :mod:`raysegment.infer.postprocess` for both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np

#: The flips of mirror test-time augmentation (nnU-Net's 2D set): none, width, height, both.
MIRROR_AXES: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def forward_probabilities(model, slices: np.ndarray, batch_size: int, exclusive: bool = False, mirror: bool = False,
                          autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                          channels_last: bool = False) -> np.ndarray:
    """Label probabilities of preprocessed slices.

    Every pass holds exactly ``batch_size`` slices (the last one padded with zeros): CPU kernels
    take other paths for other batch sizes, and a slice's result must not depend on what it was
    batched with, or a resumed run would write other masks than an uninterrupted one.

    Args:
        model: in eval mode, on its device.
        exclusive: softmax over background and the classes rather than one sigmoid per region.
        mirror: average the probabilities over the mirrored inputs (:data:`MIRROR_AXES`).
        autocast: the precision context of the forward passes.
        channels_last: NHWC inputs (tensor-core convolutions on GPU).
    Shape:
        slices ``(S, C, h, w)`` float32 -> ``(S, K, h, w)`` float32.
    """
    import torch

    device = next(model.parameters()).device
    outputs = []
    with torch.inference_mode():
        for first in range(0, len(slices), batch_size):
            chunk = slices[first : first + batch_size]
            count = len(chunk)
            if count < batch_size:
                chunk = np.concatenate([chunk, np.zeros((batch_size - count, *chunk.shape[1:]), chunk.dtype)])
            inputs = torch.from_numpy(np.ascontiguousarray(chunk)).to(device)
            outputs.append(batch_probabilities(model, inputs, exclusive, mirror, autocast, channels_last)[:count].cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)


def batch_probabilities(model, inputs, exclusive: bool = False, mirror: bool = False,
                        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                        channels_last: bool = False):
    """Label probabilities of one batch on the model's device, averaged over its mirror images when ``mirror``.

    Shape:
        inputs ``(N, C, h, w)`` tensor -> ``(N, K, h, w)`` float32 tensor.
    """
    import torch

    from raysegment.postprocess import label_probabilities

    total = None
    for axes in MIRROR_AXES if mirror else ((),):
        view = inputs.flip(axes) if axes else inputs
        if channels_last:
            view = view.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = model(view)
        prob = label_probabilities(logits.float(), exclusive)
        prob = prob.flip(axes) if axes else prob
        total = prob if total is None else total + prob
    return total / (len(MIRROR_AXES) if mirror else 1)
