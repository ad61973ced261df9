"""Mask writers: one module per output format, one registry.

A writer turns a ``(K, *spatial)`` mask (or probability map) plus the geometry of the input scan
into the bytes of one file; the caller stores them through :mod:`raysegment.storage` and records
their checksum. Adding a format is one module registering a :class:`Writer` in :data:`WRITERS`.
"""

from raysegment.writers import dicom_seg, nifti, png, tiff  # noqa: F401  (each registers its writer)
from raysegment.writers.base import (
    WRITERS,
    Reference,
    Writer,
    output_format,
    pack_labels,
)

__all__ = ["WRITERS", "Reference", "Writer", "output_format", "pack_labels"]
