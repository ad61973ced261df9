"""PNG slices and label masks (Pillow): gray, gray+alpha, RGB, RGBA, palette; 8 and 16 bit.

Palette images keep their indices (one ``"index"`` channel): a palette PNG mask stores its labels
there. PNG has no patient geometry; the affine is :func:`raysegment.scan.affine_2d`.
"""

from __future__ import annotations

import io

import numpy as np

from raysegment.errors import ScanReadError
from raysegment.readers.base import READERS, Reader, gray_or_color_names, library_errors
from raysegment.scan import Scan, affine_2d

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {0: "gray", 2: "rgb", 3: "palette", 4: "gray+alpha", 6: "rgba"}


@READERS.register("png")
class PngReader(Reader):
    name = "png"
    suffixes = (".png",)

    @staticmethod
    def sniff(head: bytes) -> bool:
        return head.startswith(_SIGNATURE)

    def decode(self, data: bytes, uri: str) -> Scan:
        if not data.startswith(_SIGNATURE) or len(data) < 33:
            raise ScanReadError(uri, "not a PNG file (no PNG signature and header)")
        # Pillow can be told process-wide to pad truncated images with zeros
        # (ImageFile.LOAD_TRUNCATED_IMAGES); a whole PNG always ends with its empty IEND chunk.
        if data.rfind(b"\x00\x00\x00\x00IEND") == -1:
            raise ScanReadError(uri, "truncated PNG (no IEND chunk)")
        bit_depth, color_type = data[24], data[25]
        array = _decode_pixels(data, uri, bit_depth, color_type)
        array = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
        names = {3: ("index",), 4: ("gray", "A")}.get(color_type) or gray_or_color_names(
            array.shape[0], color=color_type in (2, 6)
        )
        return Scan(
            array=np.ascontiguousarray(array),
            channels=names,
            spacing=(1.0, 1.0),
            affine=affine_2d(),
            source=uri,
            metadata={
                "format": "png",
                "bit_depth": int(bit_depth),
                "color_type": _COLOR_TYPES.get(color_type, str(color_type)),
            },
        )


def _decode_pixels(data: bytes, uri: str, bit_depth: int, color_type: int) -> np.ndarray:
    """``(H, W)`` or ``(H, W, samples)`` pixels at the file's own bit depth."""
    if bit_depth == 16 and color_type in (2, 4, 6):
        # Pillow has no 16-bit colour modes and would silently drop the low byte.
        import imagecodecs

        with library_errors(uri, "corrupt 16-bit PNG"):
            return imagecodecs.png_decode(data)
    from PIL import Image

    with library_errors(uri, "corrupt PNG"):
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()
            array = np.asarray(image)
    return array.astype(np.uint8) if array.dtype == bool else array
