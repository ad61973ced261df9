"""Scan readers: one module per format, one entry point.

``read_scan(uri)`` picks the reader by file ending, and by content (magic bytes) when the ending
says nothing, and returns a :class:`~raysegment.scan.Scan`; ``read_mask(uri)`` returns one channel
of integer labels. Adding a format is one module that registers a :class:`Reader` subclass in
:data:`READERS`, imported below.
"""

from raysegment.readers import dicom, nifti, png, tiff  # noqa: F401  (each registers its reader)
from raysegment.readers.base import READERS, Reader
from raysegment.readers.dispatch import format_of, read_scan
from raysegment.readers.mask import read_mask

__all__ = ["READERS", "Reader", "format_of", "read_mask", "read_scan"]
