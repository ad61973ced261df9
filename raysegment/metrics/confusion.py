"""Confusion counts and the scores computed from them, for numpy arrays and torch tensors alike.

Counting and scoring are separate, as in smp's ``metrics/functional.py``: training sums the counts
of a batch or an epoch and scores the sums; evaluation scores one case at a time.
"""

from __future__ import annotations

import sys

import numpy as np

SCORE_NAMES = ("dice", "iou", "precision", "recall", "specificity", "accuracy", "fnr")


def _is_tensor(value) -> bool:
    # A tensor means torch is imported already; numpy-only callers (the inference writers) then
    # never pay for importing it.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def confusion_counts(pred, target):
    """True/false positives/negatives per sample and class.

    Args:
        pred: predicted masks, numpy array or torch tensor, nonzero = foreground.
        target: reference masks of the same shape and library.

    Returns:
        ``(tp, fp, fn, tn)``, int64 arrays (or tensors, on the input's device) of shape ``(N, K)``.

    Shape:
        pred, target: ``(N, K, *spatial)`` with any number of spatial axes (2D slices, 3D volumes).
    """
    if pred.shape != target.shape or pred.ndim < 3:
        raise ValueError(f"pred and target must share a shape (N, K, *spatial), got {tuple(pred.shape)} and {tuple(target.shape)}")
    pred, target = pred != 0, target != 0
    spatial = tuple(range(2, pred.ndim))
    tp = (pred & target).sum(spatial)
    fp = (pred & ~target).sum(spatial)
    fn = (~pred & target).sum(spatial)
    tn = int(np.prod(pred.shape[2:])) - tp - fp - fn
    return tp, fp, fn, tn


def scores_from_counts(tp, fp, fn, tn) -> dict:
    """Dice, IoU, precision, recall (sensitivity), specificity, accuracy and false-negative rate.

    A ratio whose denominator is 0 is 1 when the case has no error at all (``fp == fn == 0``, e.g.
    prediction and reference both empty) and 0 otherwise; ``fnr = 1 - recall``.

    Args:
        tp, fp, fn, tn: counts of any shape, all numpy or all torch (summed counts are fine).

    Returns:
        name -> float64 array (or tensor) of the counts' shape, names as in :data:`SCORE_NAMES`.
    """
    if _is_tensor(tp):
        import torch

        where, (tp, fp, fn, tn) = torch.where, (torch.as_tensor(c, device=tp.device).double() for c in (tp, fp, fn, tn))
    else:
        where, (tp, fp, fn, tn) = np.where, (np.asarray(c, dtype=np.float64) for c in (tp, fp, fn, tn))
    undefined_value = where((fp + fn) == 0, 1.0, 0.0)

    def ratio(num, den):
        return where(den > 0, num / where(den > 0, den, 1.0), undefined_value)

    recall = ratio(tp, tp + fn)
    return {
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "iou": ratio(tp, tp + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": recall,
        "specificity": ratio(tn, tn + fp),
        "accuracy": ratio(tp + tn, tp + fp + fn + tn),
        "fnr": 1.0 - recall,
    }
