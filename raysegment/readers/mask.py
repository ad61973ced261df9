"""Label masks: any readable scan reduced to one channel of integer labels.

Raw label values are kept (0/255 in the LGG masks, {0, 1, 2, 4} in BraTS); mapping them to classes
is preprocessing's job.
"""

from __future__ import annotations

import numpy as np

from raysegment.errors import ScanReadError
from raysegment.readers.dispatch import read_scan
from raysegment.scan import Scan


def read_mask(uri: str, *, format: str | None = None) -> Scan:
    """Read a label mask as ``(1, *spatial)`` integers, channel ``"label"``.

    A colour mask (RGB, RGBA, gray+alpha) is accepted when its colour channels are equal and its
    alpha channel, if any, is constant: a label painted in gray, saved as colour.

    Args:
        uri: local path, ``file://`` or ``s3://`` URI.
        format: reader name to skip detection, as for :func:`read_scan`.

    Raises:
        ScanReadError: unreadable file, colour channels that differ, or non-integer values.
    """
    scan = read_scan(uri, format=format)
    array = scan.array
    if "A" in scan.channels and array.shape[0] > 1:
        alpha_index = scan.channels.index("A")
        alpha = array[alpha_index]
        if alpha.size and alpha.min() != alpha.max():
            raise ScanReadError(scan.source, "mask has a varying alpha channel; expected labels only")
        array = np.delete(array, alpha_index, axis=0)
    if array.shape[0] > 1 and not all(np.array_equal(array[0], c) for c in array[1:]):
        raise ScanReadError(scan.source, f"mask has {array.shape[0]} channels that differ; expected one channel of labels")
    return Scan(
        array=_as_integers(array[:1], scan.source),
        channels=("label",),
        spacing=scan.spacing,
        affine=scan.affine,
        source=scan.source,
        metadata=scan.metadata,
    )


def _as_integers(labels: np.ndarray, uri: str) -> np.ndarray:
    """Integer labels; float masks (common in NIfTI) must hold whole numbers only."""
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if labels.dtype.kind in "iu":
        return labels
    if labels.dtype.kind != "f":
        raise ScanReadError(uri, f"mask has {labels.dtype} values; expected integer labels")
    if not np.all(np.isfinite(labels)) or not np.array_equal(labels, np.round(labels)):
        raise ScanReadError(uri, "mask holds non-integer values; expected integer labels")
    if labels.size == 0:
        return labels.astype(np.uint8)
    low, high = int(labels.min()), int(labels.max())
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.int32):
        if np.iinfo(dtype).min <= low and high <= np.iinfo(dtype).max:
            return labels.astype(dtype)
    return labels.astype(np.int64)
