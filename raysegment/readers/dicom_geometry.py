"""DICOM patient geometry -> slice order and a RAS+ affine.

DICOM places pixel ``(row r, column c)`` of a slice at
``ImagePositionPatient + c * PixelSpacing[1] * X + r * PixelSpacing[0] * Y`` in LPS millimetres,
where ``X, Y`` are the two direction cosines of ``ImageOrientationPatient``. Volumes are stacked as
``(rows, cols, slices)`` with slices ordered along the normal ``N = X x Y``, so the voxel index
``(r, c, s)`` maps to ``P0 + r * dr * Y + c * dc * X + s * step``. The LPS affine is flipped to RAS+
(negate x and y) to match NIfTI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raysegment.errors import ScanReadError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
# Positions of a series are rounded off in the files; steps that differ by more than this are gaps.
_SPACING_TOLERANCE = 0.01


@dataclass(frozen=True)
class Plane:
    """Where one slice (a file or a frame) lies.

    Attributes:
        orientation: ``ImageOrientationPatient``: row direction X then column direction Y (LPS).
        position: ``ImagePositionPatient`` of the first pixel (LPS mm), None if the file has none.
        pixel_spacing: ``(row spacing, column spacing)`` in mm.
        thickness: ``SpacingBetweenSlices`` or ``SliceThickness`` (mm), used when positions are missing.
        instance: ``InstanceNumber`` (or frame number), the tie-breaker of the slice order.
    """

    orientation: tuple[float, ...] = AXIAL
    position: tuple[float, float, float] | None = None
    pixel_spacing: tuple[float, float] = (1.0, 1.0)
    thickness: float = 1.0
    instance: int = 0

    @property
    def normal(self) -> np.ndarray:
        row, col = np.asarray(self.orientation[:3]), np.asarray(self.orientation[3:])
        return np.cross(row, col)


def check_orientation(orientation, uri: str) -> tuple[float, ...]:
    """Validate ``ImageOrientationPatient``: six numbers, two orthogonal unit vectors."""
    values = tuple(float(v) for v in orientation)
    if len(values) != 6:
        raise ScanReadError(uri, f"ImageOrientationPatient has {len(values)} values, expected 6")
    row, col = np.asarray(values[:3]), np.asarray(values[3:])
    if not (np.isclose(np.linalg.norm(row), 1, atol=1e-3) and np.isclose(np.linalg.norm(col), 1, atol=1e-3)):
        raise ScanReadError(uri, f"ImageOrientationPatient {list(values)} is not two unit vectors")
    if abs(row @ col) > 1e-3:
        raise ScanReadError(uri, f"ImageOrientationPatient {list(values)} is not orthogonal")
    return values


def slice_order(planes: list[Plane]) -> list[int]:
    """Indices of ``planes`` sorted by position along the slice normal, then by instance number."""
    normal = planes[0].normal
    keys = [
        (float(np.dot(p.position, normal)) if p.position is not None else 0.0, p.instance, i)
        for i, p in enumerate(planes)
    ]
    return [i for *_, i in sorted(keys)]


def check_same_geometry(planes: list[Plane], uri: str) -> None:
    """All slices of one volume must share orientation and pixel spacing."""
    first = planes[0]
    for plane in planes[1:]:
        if not np.allclose(plane.orientation, first.orientation, atol=1e-4):
            raise ScanReadError(uri, f"mixed slice orientations {list(first.orientation)} and {list(plane.orientation)}")
        if not np.allclose(plane.pixel_spacing, first.pixel_spacing, rtol=1e-4):
            raise ScanReadError(uri, f"mixed pixel spacings {list(first.pixel_spacing)} and {list(plane.pixel_spacing)}")


def slice_step(planes: list[Plane], uri: str) -> np.ndarray:
    """The LPS vector from one slice to the next of ``planes`` (already in slice order).

    Taken from the first and last positions when every slice has one (so gantry tilt is kept);
    otherwise the normal times the slice thickness. Uneven or repeated positions are an error: the
    affine of a volume can only describe evenly spaced slices.
    """
    normal = planes[0].normal
    if len(planes) == 1 or any(p.position is None for p in planes):
        return normal * planes[0].thickness
    positions = np.array([p.position for p in planes], dtype=float)
    gaps = np.diff(positions @ normal)
    if np.any(gaps <= 1e-6):
        raise ScanReadError(uri, "several slices share one position (more than one volume or echo in this series?)")
    if gaps.max() - gaps.min() > _SPACING_TOLERANCE * gaps.mean() + 1e-3:
        raise ScanReadError(uri, f"uneven slice spacing ({gaps.min():.4g} to {gaps.max():.4g} mm): missing slices?")
    return (positions[-1] - positions[0]) / (len(planes) - 1)


def ras_affine(first: Plane, step: np.ndarray | None) -> np.ndarray:
    """The voxel ``(row, col[, slice])`` -> RAS+ mm affine.

    Args:
        first: the plane of the first slice.
        step: LPS vector between consecutive slices; None for a single 2D slice, whose third
            column is then the unit normal (the :class:`~raysegment.scan.Scan` convention).
    """
    row_dir, col_dir = np.asarray(first.orientation[:3]), np.asarray(first.orientation[3:])
    row_spacing, col_spacing = first.pixel_spacing
    lps = np.eye(4)
    lps[:3, 0] = col_dir * row_spacing  # moving down one row follows the column direction
    lps[:3, 1] = row_dir * col_spacing
    lps[:3, 2] = first.normal if step is None else step
    lps[:3, 3] = first.position if first.position is not None else (0.0, 0.0, 0.0)
    return LPS_TO_RAS @ lps
