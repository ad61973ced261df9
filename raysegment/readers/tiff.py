"""TIFF slices and page stacks (tifffile; compressed files decode through imagecodecs).

A 2D gray page is ``(1, H, W)``, an RGB page ``(3, H, W)`` (the LGG dataset's 256x256x3 uint8
slices), and a multi-page stack a volume ``(C, H, W, pages)``. TIFF carries no patient geometry,
so the affine is the unit-spacing identity of :func:`raysegment.scan.affine_2d`.
"""

from __future__ import annotations

import io
import struct

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

        _check_page_chain(data, uri)
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


def _check_page_chain(data: bytes, uri: str) -> None:
    """Raise unless every page (IFD) the file links to lies inside it.

    Each page header ends with the offset of the next one. A stack cut at a page boundary keeps
    its first pages whole, and tifffile reads those without an error (it only logs "invalid page
    offset"), so the cut would pass for a shorter, well-formed stack.
    """
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    # Sizes of an IFD's entry count, one entry and the next-IFD offset: classic TIFF 2/12/4, BigTIFF 8/20/8.
    count, entry, link = (("Q", 20, "Q") if big else ("H", 12, "I"))
    count_size, link_size = struct.calcsize(count), struct.calcsize(link)
    if len(data) < (16 if big else 8):
        raise ScanReadError(uri, f"truncated TIFF: {len(data)} bytes, shorter than its header")
    offset, pages, seen = struct.unpack_from(order + link, data, 8 if big else 4)[0], 0, set()
    while offset and offset not in seen:  # a loop in the chain is tifffile's to report
        seen.add(offset)
        entries = struct.unpack_from(order + count, data, offset)[0] if offset + count_size <= len(data) else None
        if entries is None or offset + count_size + entries * entry + link_size > len(data):
            raise ScanReadError(uri, f"truncated TIFF: page {pages + 1} lies past the end of the file ({len(data)} bytes) after {pages} whole pages")
        offset, pages = struct.unpack_from(order + link, data, offset + count_size + entries * entry)[0], pages + 1


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
