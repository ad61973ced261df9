"""Losses made of other losses: weighted sums and deep supervision.

Each of them computes its value through ``forward_with_terms(outputs, target) -> (loss, terms)``:
the loss, and the unweighted value of every term of a weighted sum inside it by name, so training
logs the parts of a combined loss (``train_loss_bce``) from the very computation it back-propagates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

Terms = dict[str, torch.Tensor]


def loss_with_terms(loss, outputs, target) -> tuple[torch.Tensor, Terms]:
    """``loss(outputs, target)`` and the unweighted terms of its weighted sum (none for a single loss).

    ``loss`` may be any callable; only the modules of this file know terms.
    """
    if hasattr(loss, "forward_with_terms"):
        return loss.forward_with_terms(outputs, target)
    return loss(outputs, target), {}


def term_names(loss) -> list[str]:
    """The names of the terms :func:`loss_with_terms` gives for ``loss``, in order; known before any batch is seen."""
    modules = loss.modules() if isinstance(loss, nn.Module) else ()
    outer = next((m for m in modules if isinstance(m, WeightedSum)), None)
    return list(outer.terms) if outer is not None else []


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

    def forward_with_terms(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Terms]:
        terms = {name: loss(logits, target) for name, loss in self.terms.items()}
        return sum(self.weights[name] * value for name, value in terms.items()), terms

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.forward_with_terms(logits, target)[0]

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

    def forward_with_terms(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, Terms]:
        classes = torch.arange(1, target.shape[1] + 1, device=target.device, dtype=target.dtype).reshape(1, -1, *[1] * (target.ndim - 2))
        return loss_with_terms(self.loss, logits, (target * classes).sum(1).round().long())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.forward_with_terms(logits, target)[0]


class DeepSupervisionLoss(nn.Module):
    """Apply ``loss`` to every output of a deeply supervised model and average (its terms too).

    Models with deep supervision (``unetpp`` with ``deep_supervision=True``) return a list of
    full-resolution logits in training mode and one tensor in eval mode; this wrapper accepts both,
    so the training loop can always use it.

    Shape:
        outputs: ``(N, K, H, W)`` or a sequence of such tensors; target: ``(N, K, H, W)``.
    """

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward_with_terms(self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> tuple[torch.Tensor, Terms]:
        if isinstance(outputs, torch.Tensor):
            return loss_with_terms(self.loss, outputs, target)
        parts = [loss_with_terms(self.loss, output, target) for output in outputs]
        terms = {name: torch.stack([p[1][name] for p in parts]).mean() for name in parts[0][1]}
        return torch.stack([p[0] for p in parts]).mean(), terms

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        return self.forward_with_terms(outputs, target)[0]
