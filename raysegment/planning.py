"""Plan a 3D model from the data, as nnU-Net plans its 3D full-resolution configuration.

From the training volumes' shapes and voxel spacings:

* the target **spacing** is the median spacing per axis, so a voxel means the same distance in
  every scan without resampling most of them far from their own grid;
* the **patch size** is the median shape at that spacing, each axis rounded up to what the
  network's poolings divide, and shrunk along its longest axis while it holds more voxels than
  ``max_voxels`` (the memory a training step may take): small structures such as the
  hippocampus (~36x50x35 voxels) fit whole in one patch, a brain (BraTS) is seen in 128^3 windows;
* the network's levels follow from both (:func:`raysegment.models.dynunet.plan_network`).

The headers are read from up to ``max_cases`` labeled cases (the masks: one file per case).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from raysegment.errors import ConfigError

#: nnU-Net's cap for a 3D patch on a 10 GB GPU, in voxels (128^3).
MAX_PATCH_VOXELS = 128**3


@dataclass(frozen=True)
class VolumePlan:
    """What training a 3D model on a dataset takes: voxel spacing and patch size, per axis."""

    spacing: tuple[float, float, float]
    patch_size: tuple[int, int, int]
    median_shape: tuple[int, int, int]
    cases: int


def plan_volumes(rows: pd.DataFrame, orientation: str | None = None, max_voxels: int = MAX_PATCH_VOXELS,
                 max_cases: int = 64, spacing: list[float] | None = None) -> VolumePlan:
    """The median spacing and a patch size for the volume cases in ``rows`` (manifest rows with masks).

    Args:
        spacing: the target spacing when it is already chosen; the patch is planned at it.

    Raises:
        ConfigError: no row is a readable volume.
    """
    from raysegment.preprocess import reorient, reoriented_spacing
    from raysegment.readers import read_mask

    rows = rows[rows["mask_uri"].notna()]
    if not len(rows):
        raise ConfigError("3D planning needs labeled volume cases; none were given")
    picked = rows.iloc[np.linspace(0, len(rows) - 1, min(len(rows), max_cases)).round().astype(int)]
    shapes, spacings = [], []
    for uri in picked["mask_uri"]:
        scan = read_mask(str(uri))
        if not scan.is_volume:
            raise ConfigError(f"{uri}: a 3D model needs volumes, this mask is one slice")
        _, _, transform = reorient(np.zeros((1, *scan.spatial_shape), np.uint8), scan.affine, orientation)
        spacings.append(reoriented_spacing(scan.spacing, transform))
        shapes.append(reoriented_spacing(tuple(float(n) for n in scan.spatial_shape), transform))
    target = tuple(float(s) for s in (spacing or np.median(np.asarray(spacings), axis=0)))
    resampled = np.asarray(shapes) * np.asarray(spacings) / np.asarray(target)
    median = tuple(int(round(n)) for n in np.median(resampled, axis=0))
    return VolumePlan(target, patch_size(median, target, max_voxels), median, len(picked))


def patch_size(shape: tuple[int, ...], spacing: tuple[float, ...], max_voxels: int = MAX_PATCH_VOXELS) -> tuple[int, ...]:
    """``shape`` rounded up per axis to what its poolings divide, shrunk (longest physical axis first) to ``max_voxels``."""
    patch = [_divisible(n) for n in shape]
    if max(patch) < 16:  # the network pools at least twice: its longest axis needs 16 voxels
        patch[int(np.argmax(patch))] = 16
    while math.prod(patch) > max_voxels:
        extent = [n * s for n, s in zip(patch, spacing)]
        axis = int(np.argmax(extent))
        if patch[axis] <= 8:
            break
        patch[axis] = _divisible(max(8, patch[axis] - _step(patch[axis])), down=True)
    return tuple(patch)


def _step(n: int) -> int:
    """The multiple an axis of ``n`` voxels must be: 2 per halving while it stays >= 8 voxels (nnU-Net stops at 4)."""
    halvings = max(0, int(math.floor(math.log2(max(n, 1) / 4))))
    return 2**halvings


def _divisible(n: int, down: bool = False) -> int:
    n = max(int(n), 8)
    for _ in range(4):  # rounding can add a halving, which asks for a larger multiple; settles in a step or two
        step = _step(n)
        n = (n // step) * step if down else -(-n // step) * step
    return n
