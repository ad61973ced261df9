"""The reader contract shared by every format, and the registry that lists them.

A reader is a class with a ``name``, the file ``suffixes`` it claims, a ``sniff(head)`` test on the
first bytes of a file, and ``read(uri) -> Scan``. Most formats only implement ``decode(data, uri)``:
the base class fetches the bytes through :mod:`raysegment.storage`, so every reader works on local
paths, ``file://`` and ``s3://`` alike. Format libraries are imported inside ``decode``, so listing
the readers costs nothing.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from typing import ClassVar

import numpy as np

from raysegment import storage
from raysegment.errors import RaySegmentError, ScanReadError
from raysegment.registry import Registry
from raysegment.scan import Scan

HEAD_BYTES = 8192  # enough for every magic number we test, including a gzip-compressed NIfTI header


class Reader(abc.ABC):
    """One file format. Subclasses set ``name`` and ``suffixes`` and implement ``sniff`` and ``decode``.

    Attributes:
        name: the format name (``"tiff"``), also its registry key.
        suffixes: lower-case file endings that select this reader without looking at the content.
        reads_folders: True if a folder (or S3 prefix) is one scan in this format (DICOM series).
    """

    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]
    reads_folders: ClassVar[bool] = False

    @staticmethod
    @abc.abstractmethod
    def sniff(head: bytes) -> bool:
        """True if ``head`` (the first :data:`HEAD_BYTES` of a file) looks like this format."""

    def read(self, uri: str) -> Scan:
        """Read the file at ``uri``; every failure is a :class:`ScanReadError` naming it."""
        return self.decode(fetch(uri), uri)

    @abc.abstractmethod
    def decode(self, data: bytes, uri: str) -> Scan:
        """Build a Scan from the whole content of a file; ``uri`` is for ``Scan.source`` and errors."""


READERS: Registry[type[Reader]] = Registry("reader")


def fetch(uri: str) -> bytes:
    """The bytes of ``uri``; a missing, unreachable or empty file is a :class:`ScanReadError`."""
    try:
        data = storage.read_bytes(uri)
    except RaySegmentError as exc:
        raise scan_error(uri, exc) from exc
    if not data:
        raise ScanReadError(uri, "empty file")
    return data


def is_folder(uri: str) -> bool:
    """True if ``uri`` is a folder or a non-empty S3 prefix."""
    try:
        return storage.is_dir(uri)
    except RaySegmentError as exc:
        raise scan_error(uri, exc) from exc


def scan_error(uri: str, exc: RaySegmentError) -> ScanReadError:
    """Restate a storage error about ``uri`` as a :class:`ScanReadError`."""
    message = str(exc)
    # storage errors already start with "uri: "; ScanReadError adds it again.
    for prefix in (f"{uri}: ", f"{storage.normalize(uri)}: "):
        message = message.removeprefix(prefix)
    return ScanReadError(uri, message)


@contextlib.contextmanager
def library_errors(uri: str, what: str) -> Iterator[None]:
    """Turn whatever a format library raises into a :class:`ScanReadError` for ``uri``.

    Args:
        uri: the file being read.
        what: the failing step in a few words (``"not a readable TIFF"``), put before the
            library's own message.
    """
    try:
        yield
    except RaySegmentError:
        raise
    except Exception as exc:  # format libraries raise everything from ValueError to struct.error
        detail = " ".join(str(exc).split())[:300]
        raise ScanReadError(uri, f"{what} ({type(exc).__name__}: {detail})" if detail else what) from exc


def native(array: np.ndarray) -> np.ndarray:
    """``array`` in native byte order (big-endian files give ``>i2`` arrays, which torch rejects)."""
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def gray_or_color_names(count: int, color: bool) -> tuple[str, ...]:
    """Channel names for a 2D image format: ``("gray",)``, ``("R", "G", "B"[, "A"])`` or ``c0..``."""
    if count == 1:
        return ("gray",)
    if color and count in (3, 4):
        return ("R", "G", "B", "A")[:count]
    return tuple(f"c{i}" for i in range(count))
