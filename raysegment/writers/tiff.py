"""TIFF masks: a page per slice of a label map (or of a packed one-hot stack); float probability maps per class."""

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
        if array.dtype.kind != "f":
            return self.encode_label_map(pack_labels(array), reference)
        data = array.astype(np.float32)
        data = np.moveaxis(data, -1, 0) if data.ndim == 4 else data
        return _tiff(data, "ZCYX" if data.ndim == 4 else "CYX")

    def encode_label_map(self, labels: np.ndarray, reference: Reference) -> bytes:
        """``(H, W)``, or a volume ``(H, W, S)`` as ``S`` pages."""
        data = np.moveaxis(labels, -1, 0) if labels.ndim == 3 else labels
        return _tiff(data, "ZYX" if data.ndim == 3 else "YX")


def _tiff(data: np.ndarray, axes: str) -> bytes:
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.ascontiguousarray(data), photometric="minisblack", compression="zlib",
                     metadata={"axes": axes}, datetime=False, software=None)
    return buffer.getvalue()
