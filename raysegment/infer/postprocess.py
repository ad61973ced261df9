"""Model-space probabilities -> a mask on the input's voxel grid.

Order matters: probabilities are mapped back (bilinear through the inverse of every geometric
step, then the inverse reorientation) before thresholding, so the mask edge follows the smooth
probability map rather than blocky upsampled labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raysegment.preprocess import invert_geometry, restore_orientation


def to_input_grid(prob: np.ndarray, steps: list[dict], orientation: list | None, volume: bool) -> np.ndarray:
    """Probabilities of one case back on the input grid.

    Shape:
        ``prob`` ``(S, K, h, w)`` -> ``(K, H, W)`` for a 2D case (S = 1) or ``(K, I, J, S)`` for a volume.
    """
    slices = [np.clip(invert_geometry(p, steps, mode="linear"), 0.0, 1.0) for p in prob]
    if not volume:
        return slices[0].astype(np.float32)
    return restore_orientation(np.stack(slices, axis=-1), orientation).astype(np.float32)


def binarize(prob: np.ndarray, threshold: float, largest_component: bool) -> np.ndarray:
    """``(K, *spatial)`` probabilities -> uint8 0/1 mask, optionally only each class's largest component."""
    mask = (prob > threshold).astype(np.uint8)
    if largest_component:
        for k in range(mask.shape[0]):
            mask[k] = largest_connected_component(mask[k])
    return mask


def largest_connected_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected component of a 2D or 3D mask (all of it when there is none or one)."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return (labels == sizes.argmax()).astype(mask.dtype)


def foreground_ml(mask: np.ndarray, affine: Any) -> list[float]:
    """Foreground volume per class in mL: voxel count x voxel volume from the affine.

    For a 2D slice the affine's third column is the slice normal, so the voxel volume uses the
    slice thickness it records (1 mm for formats without geometry).
    """
    voxel_mm3 = abs(float(np.linalg.det(np.asarray(affine, float)[:3, :3])))
    return [float(mask[k].sum()) * voxel_mm3 / 1000.0 for k in range(mask.shape[0])]
