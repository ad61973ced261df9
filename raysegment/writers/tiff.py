"""TIFF masks: a page per slice of a packed label image; float probability maps per class."""

from __future__ import annotations

import io

import numpy as np

from raysegment.writers.base import WRITERS, Reference, Writer, pack_labels


@WRITERS.register("tiff")
class TiffWriter(Writer):
    name = "tiff"
    suffix = ".tif"

    def encode(self, array: np.ndarray, reference: Reference) -> bytes:
        """Masks: ``(H, W)`` or pages ``(S, H, W)`` of :func:`pack_labels`; floats: ``(K, H, W[, S])`` as
        separate planes (volumes as ``(S, K, H, W)`` pages), zlib-compressed."""
        import tifffile

        if array.dtype.kind == "f":
            data = array.astype(np.float32)
            data = np.moveaxis(data, -1, 0) if data.ndim == 4 else data
            axes = "ZCYX" if data.ndim == 4 else "CYX"
        else:
            data = pack_labels(array)
            data = np.moveaxis(data, -1, 0) if data.ndim == 3 else data
            axes = "ZYX" if data.ndim == 3 else "YX"
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, np.ascontiguousarray(data), photometric="minisblack", compression="zlib",
                         metadata={"axes": axes}, datetime=False, software=None)
        return buffer.getvalue()
