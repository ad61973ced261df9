"""The registered losses: thin builders around segmentation-models-pytorch's implementations.

Each builder takes the task ``mode`` (see :mod:`raysegment.losses.constants`) and its own
parameters, and returns a module ``loss(logits, target) -> scalar`` with logits and float 0/1
targets of shape ``(N, K, H, W)``. Adding a loss is one decorated builder here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from segmentation_models_pytorch import losses as smp_losses
from torch import nn

from raysegment.errors import ConfigError
from raysegment.losses.combine import WeightedSum
from raysegment.losses.constants import MULTICLASS_MODE
from raysegment.registry import Registry

LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss")


@LOSSES.register("dice")
def dice(mode: str, smooth: float = 0.0, log_loss: bool = False) -> nn.Module:
    """Soft Dice loss ``1 - Dice(sigmoid(logits), target)``; channels with an empty target add 0 (smp)."""
    return smp_losses.DiceLoss(mode, smooth=smooth, log_loss=log_loss)


@LOSSES.register("jaccard")
def jaccard(mode: str, smooth: float = 0.0, log_loss: bool = False) -> nn.Module:
    """Soft Jaccard (IoU) loss ``1 - IoU(sigmoid(logits), target)``."""
    return smp_losses.JaccardLoss(mode, smooth=smooth, log_loss=log_loss)


@LOSSES.register("tversky")
def tversky(mode: str, alpha: float = 0.5, beta: float = 0.5, gamma: float = 1.0, smooth: float = 0.0) -> nn.Module:
    """Tversky loss: ``alpha`` weighs false positives, ``beta`` false negatives (0.5/0.5 = Dice)."""
    return smp_losses.TverskyLoss(mode, alpha=alpha, beta=beta, gamma=gamma, smooth=smooth)


@LOSSES.register("focal")
def focal(mode: str, alpha: float | None = None, gamma: float = 2.0, normalized: bool = False) -> nn.Module:
    """Focal loss (Lin et al.): BCE down-weighting easy pixels by ``(1 - p_t) ** gamma``."""
    return smp_losses.FocalLoss(mode, alpha=alpha, gamma=gamma, normalized=normalized)


@LOSSES.register("bce")
def bce(mode: str, pos_weight: float | Sequence[float] | None = None, smooth_factor: float | None = None) -> nn.Module:
    """Binary cross-entropy on logits, mean over pixels; ``pos_weight`` per class or one for all.

    For exclusive classes, the cross-entropy of the softmax over background and the classes.
    """
    if mode == MULTICLASS_MODE:
        if pos_weight is not None:
            raise ConfigError("loss 'bce': pos_weight weighs independent regions; exclusive classes take none")
        return smp_losses.SoftCrossEntropyLoss(smooth_factor=smooth_factor or 0.0)
    weight = None
    if pos_weight is not None:
        weight = torch.as_tensor(pos_weight, dtype=torch.float32).reshape(-1, 1, 1)  # broadcast over (K, H, W)
    return smp_losses.SoftBCEWithLogitsLoss(ignore_index=None, smooth_factor=smooth_factor, pos_weight=weight)


@LOSSES.register("bce_dice")
def bce_dice(mode: str, bce_weight: float = 0.5, dice_weight: float = 0.5, smooth: float = 0.0) -> nn.Module:
    """``bce_weight * BCE + dice_weight * Dice``, the usual loss for brain-tumour masks (cross-entropy
    + Dice for exclusive classes, nnU-Net's loss)."""
    return WeightedSum({"bce": bce(mode), "dice": dice(mode, smooth=smooth)}, {"bce": bce_weight, "dice": dice_weight})
