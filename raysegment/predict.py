"""The forward pass both ``evaluate`` and ``infer`` run: preprocessed slices or volumes -> label probabilities.

One function, so the figures ``evaluate`` reports come from the same computation as the masks
``infer`` writes (same batch sizes, precision and test-time mirroring); what happens after it (back
to the input grid, post-processing) is :mod:`raysegment.infer.postprocess` for both. Validation
during training runs :func:`batch_probabilities` (2D) and :func:`volume_probabilities` (3D).

2D models see whole slices. 3D models see a volume through overlapping windows of their training
patch size (MONAI's ``sliding_window_inference``, half-window overlap, Gaussian weights that trust
a window's centre more than its border, as nnU-Net predicts).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np

#: The flips of mirror test-time augmentation (nnU-Net's 2D set): none, width, height, both.
MIRROR_AXES: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
#: nnU-Net's 3D set: every combination of the three spatial axes.
MIRROR_AXES_3D: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-3,), (-2, -1), (-3, -1), (-3, -2), (-3, -2, -1))
#: Overlap of neighbouring sliding windows, as a share of the window (nnU-Net: 0.5).
WINDOW_OVERLAP = 0.5
#: Voxels of the windows one forward pass takes at most: a batch of 16 hippocampus windows
#: (40x56x40), but one BraTS window (128^3), whose activations alone fill gigabytes.
VOXELS_PER_PASS = 128**3


def forward_probabilities(model, slices: np.ndarray, batch_size: int, exclusive: bool = False, mirror: bool = False,
                          autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                          channels_last: bool = False, patch_size: list[int] | None = None) -> np.ndarray:
    """Label probabilities of preprocessed slices, or of preprocessed volumes for a 3D model.

    Every pass holds exactly ``batch_size`` slices (the last one padded with zeros): CPU kernels
    take other paths for other batch sizes, and a slice's result must not depend on what it was
    batched with, or a resumed run would write other masks than an uninterrupted one.

    Args:
        model: in eval mode, on its device.
        exclusive: softmax over background and the classes rather than one sigmoid per region.
        mirror: average the probabilities over the mirrored inputs (:data:`MIRROR_AXES`).
        autocast: the precision context of the forward passes.
        channels_last: NHWC inputs (tensor-core convolutions on GPU; 2D only).
        patch_size: the window of a 3D model; ``batch_size`` windows go through at once.
    Shape:
        slices ``(S, C, h, w)`` float32 -> ``(S, K, h, w)`` float32; volumes ``(V, C, d, h, w)``
        -> ``(V, K, d, h, w)``.
    """
    import torch

    device = next(model.parameters()).device
    if slices.ndim == 5:
        with torch.inference_mode():
            return np.stack([volume_probabilities(model, torch.from_numpy(np.array(v, np.float32)).to(device), patch_size, batch_size,
                                                  exclusive, mirror, autocast).cpu().numpy() for v in slices]) \
                if len(slices) else np.zeros((0,), np.float32)
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


def volume_probabilities(model, volume, patch_size: list[int] | None, batch_size: int = 2, exclusive: bool = False, mirror: bool = False,
                         autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
    """Label probabilities of one volume from a 3D model, window by window.

    Logits are blended across the overlapping windows (Gaussian weights) before they become
    probabilities; with ``mirror`` the probabilities of the volume and its seven mirror images
    are averaged (nnU-Net's 3D test-time augmentation).

    Shape:
        volume ``(C, d, h, w)`` tensor on the model's device -> ``(K, d, h, w)`` float32 tensor.
    """
    from raysegment.postprocess import label_probabilities

    total = None
    axes_set = MIRROR_AXES_3D if mirror else ((),)
    for axes in axes_set:
        view = volume[None].flip(axes) if axes else volume[None]
        prob = label_probabilities(window_logits(model, view, patch_size, batch_size, autocast), exclusive)
        prob = prob.flip(axes) if axes else prob
        total = prob if total is None else total + prob
    return (total / len(axes_set))[0]


def window_logits(model, volumes, patch_size: list[int] | None, batch_size: int = 2,
                  autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
    """Logits of whole volumes from overlapping ``patch_size`` windows, blended with Gaussian weights.

    At most ``batch_size`` windows, and at most :data:`VOXELS_PER_PASS` voxels, go through one pass.

    Shape:
        volumes ``(N, C, d, h, w)`` tensor -> ``(N, C_out, d, h, w)`` float32 tensor.
    """
    import math

    from monai.inferers import sliding_window_inference

    if patch_size is None:
        raise ValueError("a 3D model predicts through windows: its preprocessing needs a patch_size")

    def forward(window):
        with autocast():
            return model(window).float()

    windows = max(1, min(batch_size, VOXELS_PER_PASS // math.prod(patch_size)))
    return sliding_window_inference(volumes, roi_size=list(patch_size), sw_batch_size=windows, predictor=forward,
                                    overlap=WINDOW_OVERLAP, mode="gaussian")
