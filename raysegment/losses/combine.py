"""Losses made of other losses: weighted sums and deep supervision."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class WeightedSum(nn.Module):
    """``sum_i weight_i * loss_i(logits, target)``.

    Args:
        losses: name -> loss module; the names label the terms (for logging and ``repr``).
        weights: name -> weight.
    """

    def __init__(self, losses: dict[str, nn.Module], weights: dict[str, float]):
        super().__init__()
        self.terms = nn.ModuleDict(losses)
        self.weights = {name: float(weights[name]) for name in losses}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(self.weights[name] * loss(logits, target) for name, loss in self.terms.items())

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={weight:g}" for name, weight in self.weights.items())


class ClassIndexTarget(nn.Module):
    """Feed ``loss`` the class index of each voxel (0 background, k + 1 for class k) rather than
    the one-hot of the classes, as smp's multiclass losses take their targets.

    Shape:
        logits ``(N, K + 1, H, W)``; target ``(N, K, H, W)`` 0/1, at most one class per voxel.
    """

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        classes = torch.arange(1, target.shape[1] + 1, device=target.device, dtype=target.dtype).reshape(1, -1, *[1] * (target.ndim - 2))
        return self.loss(logits, (target * classes).sum(1).round().long())


class DeepSupervisionLoss(nn.Module):
    """Apply ``loss`` to every output of a deeply supervised model and average.

    Models with deep supervision (``unetpp`` with ``deep_supervision=True``) return a list of
    full-resolution logits in training mode and one tensor in eval mode; this wrapper accepts both,
    so the training loop can always use it.

    Shape:
        outputs: ``(N, K, H, W)`` or a sequence of such tensors; target: ``(N, K, H, W)``.
    """

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        return torch.stack([self.loss(output, target) for output in outputs]).mean()
