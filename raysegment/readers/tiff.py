"""TIFF slices and page stacks (tifffile; compressed files decode through imagecodecs).

A 2D gray page is ``(1, H, W)``, an RGB page ``(3, H, W)`` (the LGG dataset's 256x256x3 uint8
slices), and a multi-page stack a volume ``(C, H, W, pages)``. TIFF carries no patient geometry,
so the affine is the unit-spacing identity of :func:`raysegment.scan.affine_2d`.
"""

from __future__ import annotations

import io

import numpy as np

from raysegment.errors import ScanReadError
from raysegment.readers.base import READERS, Reader, gray_or_color_names, library_errors, native
from raysegment.scan import Scan, affine_2d

_CHANNEL_AXES = "SC"  # tifffile's letters for samples per pixel and separate channels


@READERS.register("tiff")
class TiffReader(Reader):
    name = "tiff"
    suffixes = (".tif", ".tiff")

    @staticmethod
    def sniff(head: bytes) -> bool:
        # A DICOM-TIFF dual-personality file hides a TIFF header in the DICOM preamble; it is DICOM.
        classic_or_big = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
        return head[:4] in classic_or_big and head[128:132] != b"DICM"

    def decode(self, data: bytes, uri: str) -> Scan:
        import tifffile

        with library_errors(uri, "not a readable TIFF"):
            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                first = tif.series[0]
                # Pages appended one write at a time come back as one series each; stack those that
                # match the first (thumbnails and pyramid levels have other shapes and are left out).
                same = [s for s in tif.series if s.shape == first.shape and s.dtype == first.dtype]
                array = np.stack([s.asarray() for s in same]) if len(same) > 1 else first.asarray()
                axes = ("I" if len(same) > 1 else "") + first.axes
                photometric = first.keyframe.photometric.name
                compression = first.keyframe.compression.name
        array, pages = _channels_first(native(array), axes, uri)
        color = photometric == "RGB"
        names = ("index",) if photometric == "PALETTE" else gray_or_color_names(array.shape[0], color)
        spacing = (1.0, 1.0, 1.0) if pages else (1.0, 1.0)
        return Scan(
            array=array,
            channels=names,
            spacing=spacing,
            affine=np.eye(4) if pages else affine_2d(),
            source=uri,
            metadata={"format": "tiff", "photometric": photometric.lower(), "compression": compression.lower()},
        )


def _channels_first(array: np.ndarray, axes: str, uri: str) -> tuple[np.ndarray, int]:
    """Reorder tifffile's axes to ``(C, Y, X)`` or ``(C, Y, X, pages)``.

    Args:
        array: what tifffile returned.
        axes: tifffile's axis letters for ``array`` (``"YX"``, ``"YXS"``, ``"ZCYX"``, ...).

    Returns:
        The array and the number of pages (0 for a single 2D image).
    """
    if "Y" not in axes or "X" not in axes:
        raise ScanReadError(uri, f"TIFF series has axes {axes!r}, expected an image with Y and X")
    channel_axes = [i for i, a in enumerate(axes) if a in _CHANNEL_AXES and array.shape[i] > 1]
    if len(channel_axes) > 1:
        raise ScanReadError(uri, f"TIFF series has two channel axes ({axes!r}, shape {array.shape})")
    y, x = axes.index("Y"), axes.index("X")
    page_axes = [i for i in range(array.ndim) if i not in (y, x, *channel_axes)]
    array = np.transpose(array, channel_axes + [y, x] + page_axes)
    height, width = array.shape[len(channel_axes)], array.shape[len(channel_axes) + 1]
    channels = array.shape[0] if channel_axes else 1
    pages = int(np.prod([array.shape[i] for i in range(len(channel_axes) + 2, array.ndim)], dtype=int))
    if pages == 1:
        return np.ascontiguousarray(array.reshape(channels, height, width)), 0
    return np.ascontiguousarray(array.reshape(channels, height, width, pages)), pages
