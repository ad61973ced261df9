"""PNG masks of 2D slices: one packed label image (0/255 for a single class)."""

from __future__ import annotations

import io

import numpy as np

from raysegment.errors import ConfigError
from raysegment.writers.base import WRITERS, Reference, Writer, pack_labels


@WRITERS.register("png")
class PngWriter(Writer):
    name = "png"
    suffix = ".png"
    holds_floats = False

    def encode(self, array: np.ndarray, reference: Reference) -> bytes:
        from PIL import Image

        if array.ndim != 3:
            raise ConfigError(f"case {reference.case_id}: PNG holds 2D slices, this mask is {array.shape[1:]}; use --format nifti")
        buffer = io.BytesIO()
        Image.fromarray(pack_labels(array)).save(buffer, format="PNG")
        return buffer.getvalue()
