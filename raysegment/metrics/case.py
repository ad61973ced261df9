"""All metrics of one case (a 2D slice or a 3D volume), one row per class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from raysegment.metrics.confusion import SCORE_NAMES, confusion_counts, scores_from_counts
from raysegment.metrics.distance import distance_metrics

#: Numeric columns of :func:`case_metrics` rows, in order (``class`` and ``distance_undefined`` aside).
CASE_METRICS = (*SCORE_NAMES, "hd95", "assd", "avd", "volume_pred", "volume_true")


def case_metrics(
    pred: np.ndarray,
    target: np.ndarray,
    spacing: Sequence[float],
    class_names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Overlap, surface-distance and volume metrics of one case.

    Args:
        pred: predicted masks, nonzero = foreground.
        target: reference masks.
        spacing: voxel size in mm along each spatial axis.
        class_names: a name per class; the class index when None.

    Returns:
        One dict per class with ``class``, the scores of
        :func:`~raysegment.metrics.confusion.scores_from_counts`, ``hd95`` and ``assd`` (mm),
        ``volume_pred``, ``volume_true`` and ``avd`` = ``|volume_pred - volume_true|`` (mL for 3D
        volumes; mm^2 of area for 2D slices), and ``distance_undefined``.

    Shape:
        pred, target: ``(K, *spatial)``, 2 or 3 spatial axes.
    """
    pred, target = np.asarray(pred) != 0, np.asarray(target) != 0
    if pred.shape != target.shape or len(spacing) != pred.ndim - 1:
        raise ValueError(
            f"pred {pred.shape} and target {target.shape} must be (K, *spatial) with one spacing per spatial axis, got {tuple(spacing)}"
        )
    n_classes = pred.shape[0]
    if class_names is not None and len(class_names) != n_classes:
        raise ValueError(f"{len(class_names)} class names for {n_classes} classes")
    tp, fp, fn, tn = confusion_counts(pred[None], target[None])
    scores = scores_from_counts(tp, fp, fn, tn)
    voxel = float(np.prod(spacing)) / (1000.0 if len(spacing) == 3 else 1.0)  # mm^3 -> mL
    rows = []
    for k in range(n_classes):
        volume_pred = float(tp[0, k] + fp[0, k]) * voxel
        volume_true = float(tp[0, k] + fn[0, k]) * voxel
        rows.append(
            {
                "class": class_names[k] if class_names is not None else k,
                **{name: float(values[0, k]) for name, values in scores.items()},
                **distance_metrics(pred[k], target[k], spacing),
                "avd": abs(volume_pred - volume_true),
                "volume_pred": volume_pred,
                "volume_true": volume_true,
            }
        )
    return rows
