"""PNG masks of 2D slices: a label map, or a packed one-hot stack (0/255 for a single class)."""

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
        return self.encode_label_map(pack_labels(array), reference)

    def encode_label_map(self, labels: np.ndarray, reference: Reference) -> bytes:
        from PIL import Image

        if labels.ndim != 2:
            raise ConfigError(f"case {reference.case_id}: PNG holds 2D slices, this mask is {labels.shape}; use --format nifti")
        buffer = io.BytesIO()
        Image.fromarray(labels).save(buffer, format="PNG")
        return buffer.getvalue()
