"""Pick the reader for a URI: by file ending, else by content (magic bytes), and read it."""

from __future__ import annotations

import os

from raysegment import storage
from raysegment.errors import RaySegmentError, ScanReadError
from raysegment.readers.base import HEAD_BYTES, READERS, Reader, fetch, is_folder
from raysegment.scan import Scan


def read_scan(uri: str, *, format: str | None = None, num_slices: int | None = None) -> Scan:
    """Read an image or volume in any registered format.

    Args:
        uri: local path, ``file://`` or ``s3://`` URI of a file, or of a DICOM series folder.
        format: a reader name (``"tiff"``, ``"nifti"``, ``"dicom"``, ``"png"``) to skip detection.
        num_slices: the slices the volume is known to have (a manifest's ``num_slices``,
            :func:`raysegment.manifest.expected_slices`). A stack cut at a page boundary or a
            series missing a file still reads as a smaller, well-formed volume; this is what
            tells them apart from the scan that was ingested.

    Returns:
        A :class:`~raysegment.scan.Scan` (channels-first, RAS+ affine, ``source`` = the normalized URI).

    Raises:
        ScanReadError: the file is missing, empty, corrupt, truncated or in no supported format,
            or holds another number of slices than ``num_slices``.
    """
    uri = _normalize(uri)
    reader, data = _resolve(uri, format)
    scan = reader.read(uri) if data is None else reader.decode(data, uri)
    if num_slices is not None and scan.num_slices != num_slices:
        raise ScanReadError(uri, f"{scan.num_slices} slices where the manifest has {num_slices}: "
                                 "a file cut short, or missing from the series?")
    return scan


def format_of(uri: str) -> str:
    """The reader name for ``uri`` (``"tiff" | "nifti" | "dicom" | "png"``), as :func:`read_scan` picks it.

    Only opens the file when its ending says nothing.
    """
    return _resolve(_normalize(uri), None)[0].name


def _normalize(uri: str) -> str:
    try:
        return storage.normalize(uri)
    except RaySegmentError as exc:
        raise ScanReadError(str(uri), "unsupported URI scheme (use a local path, file:// or s3://)") from exc


def _resolve(uri: str, format: str | None) -> tuple[Reader, bytes | None]:
    """The reader for ``uri`` and, when detection had to read the file, its bytes (read only once)."""
    if format is not None:
        if format not in READERS:
            raise ScanReadError(uri, f"unknown format {format!r}; valid: {', '.join(READERS.names())}")
        return READERS.get(format)(), None
    by_suffix = _by_suffix(uri)
    if by_suffix is not None:
        return by_suffix, None
    if is_folder(uri):
        for reader in _reader_classes():
            if reader.reads_folders:
                return reader(), None
        raise ScanReadError(uri, "is a folder, and no format reads folders")
    data = fetch(uri)
    head = data[:HEAD_BYTES]
    # The sniffs exclude one another (a DICOM-TIFF hybrid is DICOM only), so the first match is the match.
    for reader in _reader_classes():
        if reader.sniff(head):
            return reader(), data
    ending = _ending(uri)
    what = f"unsupported file ending {ending!r}" if ending else "no file ending"
    raise ScanReadError(uri, f"{what}, and the content is not {', '.join(READERS.names())}")


def _reader_classes() -> list[type[Reader]]:
    return [READERS.get(name) for name in READERS]


def _by_suffix(uri: str) -> Reader | None:
    name = storage.basename(uri).lower()
    for reader in _reader_classes():
        if name.endswith(reader.suffixes):
            return reader()
    return None


def _ending(uri: str) -> str:
    return os.path.splitext(storage.basename(uri))[1].lower()
