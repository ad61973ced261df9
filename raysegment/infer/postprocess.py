"""Model-space probabilities -> masks on the input's voxel grid, by the checkpoint's post-processing.

Order matters: probabilities are mapped back (bilinear through the inverse of every geometric
step, then the inverse reorientation) before thresholding, so the mask edge follows the smooth
probability map rather than blocky upsampled labels. The rule itself is
:class:`raysegment.postprocess.PostprocessConfig`, shared with validation and ``evaluate``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raysegment.postprocess import PostprocessConfig
from raysegment.preprocess import invert_geometry, restore_orientation


def to_input_grid(prob: np.ndarray, steps: list[dict], orientation: list | None, volume: bool) -> np.ndarray:
    """Probabilities of one case back on the input grid.

    Shape:
        ``prob`` ``(S, K, h, w)`` -> ``(K, H, W)`` for a 2D case (S = 1) or ``(K, I, J, S)`` for a volume;
        a 3D model's ``(1, K, i, j, s)`` -> ``(K, I, J, S)``.
    """
    if prob.ndim == 5:  # one whole volume of a 3D model: undo its resampling, then its reorientation
        grid = np.clip(invert_geometry(prob[0], steps, mode="linear"), 0.0, 1.0)
        return restore_orientation(grid, orientation).astype(np.float32)
    slices = [np.clip(invert_geometry(p, steps, mode="linear"), 0.0, 1.0) for p in prob]
    if not volume:
        return slices[0].astype(np.float32)
    return restore_orientation(np.stack(slices, axis=-1), orientation).astype(np.float32)


def postprocess_unit(probs: list[np.ndarray], config: PostprocessConfig, exclusive: bool = False) -> list[np.ndarray]:
    """The masks of a unit's cases, from their probabilities on the input grid.

    Several cases in a unit are the slices of one patient volume, in order: stacked along a new
    last axis, so that the rule sees the volume (the largest component is 3D), as validation and
    ``evaluate`` apply it. Slices of different shapes cannot be stacked and are made one by one.

    Args:
        exclusive: the labels are exclusive classes (``PreprocessConfig.exclusive``).
    Shape:
        ``(K, *spatial)`` per case, in and out.
    """
    if len(probs) > 1 and probs[0].ndim == 3 and len({p.shape for p in probs}) == 1:
        mask = config.apply(np.stack(probs, axis=-1), exclusive)
        return [np.ascontiguousarray(mask[..., i]) for i in range(len(probs))]
    return [config.apply(p, exclusive) for p in probs]


def foreground_ml(mask: np.ndarray, affine: Any) -> list[float]:
    """Foreground volume per class in mL: voxel count x voxel volume from the affine.

    For a 2D slice the affine's third column is the slice normal, so the voxel volume uses the
    slice thickness it records (1 mm for formats without geometry).
    """
    voxel_mm3 = abs(float(np.linalg.det(np.asarray(affine, float)[:3, :3])))
    return [float(mask[k].sum()) * voxel_mm3 / 1000.0 for k in range(mask.shape[0])]
