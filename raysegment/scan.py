"""The one in-memory image type every reader returns and every writer takes.

Layout convention (used by readers, preprocessing, training and inference alike):

* ``array`` is channels-first: ``(C, *spatial)``.
* The spatial axes are the file's own voxel index order: ``(rows, cols)`` for a 2D slice,
  ``(i, j, k)`` for a volume (NIfTI order; a DICOM series is stacked as ``(rows, cols, slices)``).
  Volumes are cut into 2D slices along the **last** spatial axis.
* ``affine`` maps voxel indices ``(i, j, k, 1)`` to RAS+ world millimetres, as in NIfTI. For a 2D
  slice it is a 4x4 whose third column is the unit slice normal.
* Masks are Scans too, with one channel of integer labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Scan:
    """An image or label map with its geometry.

    Attributes:
        array: pixel data, shape ``(C, *spatial)``.
        channels: one name per channel (``("flair", "t1", ...)``, ``("gray",)``, ``("R", "G", "B")``).
        spacing: voxel size in mm per spatial axis.
        affine: 4x4 voxel-index -> RAS+ mm transform.
        source: URI the scan was read from.
        metadata: format details without patient identifiers (no names, IDs, dates of birth).
    """

    array: np.ndarray
    channels: tuple[str, ...]
    spacing: tuple[float, ...]
    affine: np.ndarray
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        self.spacing = tuple(float(s) for s in self.spacing)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.array.ndim not in (3, 4):
            raise ValueError(f"{self.source}: Scan array must be (C, H, W) or (C, I, J, K), got {self.array.shape}")
        if len(self.channels) != self.array.shape[0]:
            raise ValueError(f"{self.source}: {len(self.channels)} channel names for {self.array.shape[0]} channels")
        if len(self.spacing) != self.array.ndim - 1:
            raise ValueError(f"{self.source}: spacing {self.spacing} does not match spatial shape {self.spatial_shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"{self.source}: affine must be 4x4, got {self.affine.shape}")

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[1:])

    @property
    def is_volume(self) -> bool:
        return self.array.ndim == 4

    @property
    def num_slices(self) -> int:
        """Slices along the last spatial axis (1 for a 2D image)."""
        return self.array.shape[-1] if self.is_volume else 1

    @property
    def orientation(self) -> str:
        """Three-letter RAS orientation code of the voxel axes, e.g. ``"LPS"`` or ``"RAS"``."""
        import nibabel.orientations as nio

        return "".join(nio.aff2axcodes(self.affine))

    def slice(self, index: int) -> Scan:
        """The 2D slice ``index`` along the last axis of a volume, with its own affine."""
        if not self.is_volume:
            raise ValueError(f"{self.source}: slice() needs a volume, this scan is 2D")
        affine = self.affine.copy()
        affine[:3, 3] = self.affine[:3, :3] @ np.array([0.0, 0.0, float(index)]) + self.affine[:3, 3]
        return Scan(
            array=self.array[..., index],
            channels=self.channels,
            spacing=self.spacing[:2],
            affine=affine,
            source=f"{self.source}#slice={index}",
            metadata=dict(self.metadata),
        )

    def summary(self) -> dict[str, Any]:
        """What ``raysegment inspect`` prints: shape, dtype, spacing, orientation, range, channels."""
        finite = self.array[np.isfinite(self.array)] if self.array.dtype.kind == "f" else self.array
        return {
            "source": self.source,
            "shape": list(self.array.shape),
            "dtype": str(self.array.dtype),
            "spacing": list(self.spacing),
            "orientation": self.orientation,
            "min": float(finite.min()) if finite.size else None,
            "max": float(finite.max()) if finite.size else None,
            "channels": list(self.channels),
            "metadata": {k: v for k, v in self.metadata.items() if isinstance(v, (str, int, float, bool))},
        }


def affine_2d(spacing: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """The affine of a 2D image with no geometry of its own (TIFF, PNG): a scaled identity."""
    affine = np.eye(4)
    affine[0, 0], affine[1, 1] = float(spacing[0]), float(spacing[1])
    return affine
