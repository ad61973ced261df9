"""DICOM files and series folders (pydicom 3; compressed syntaxes via the pylibjpeg plugins).

* One single-frame file: ``(C, rows, cols)``.
* One multi-frame file: ``(C, rows, cols, frames)``, frames ordered along the slice normal.
* A folder or S3 prefix holding one series: ``(C, rows, cols, slices)``, files ordered by
  ``ImagePositionPatient`` projected on the slice normal, then ``InstanceNumber``.

``RescaleSlope``/``RescaleIntercept`` are applied (output becomes float32) whenever they are not the
identity. Metadata is a fixed list of technical fields: no patient names, IDs, dates or UIDs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from raysegment import storage
from raysegment.errors import RaySegmentError, ScanReadError
from raysegment.readers import dicom_geometry as geo
from raysegment.readers.base import READERS, Reader, fetch, is_folder, scan_error
from raysegment.readers.dicom_file import DicomImage, Frame, load_image
from raysegment.scan import Scan

_FETCH_THREADS = 8  # a series is hundreds of small objects; on S3 each GET is mostly waiting


@READERS.register("dicom")
class DicomReader(Reader):
    name = "dicom"
    suffixes = (".dcm", ".dicom")
    reads_folders = True

    @staticmethod
    def sniff(head: bytes) -> bool:
        return head[128:132] == b"DICM"

    def read(self, uri: str) -> Scan:
        try:
            data = fetch(uri)
        except ScanReadError:
            # Only a URI that is not a file pays for the folder check (one more request on S3).
            if is_folder(uri):
                return self.read_series(uri)
            raise
        return self.decode(data, uri)

    def decode(self, data: bytes, uri: str) -> Scan:
        image = load_image(data, uri)
        if image is None:
            raise ScanReadError(uri, "DICOM file holds no image (no pixel data)")
        return _to_scan([image], uri)

    def read_series(self, uri: str) -> Scan:
        """Stack the images of one series folder (or S3 prefix) into a volume."""
        try:
            files = storage.list_files(uri, recursive=False)
        except RaySegmentError as exc:
            raise scan_error(uri, exc) from exc
        with ThreadPoolExecutor(_FETCH_THREADS) as pool:
            images = [image for image in pool.map(_series_member, files) if image is not None]
        if not images:
            raise ScanReadError(uri, f"no DICOM images among the {len(files)} files of this folder")
        series = {image.series for image in images}
        if len(series) > 1:
            raise ScanReadError(uri, f"folder holds {len(series)} DICOM series; point at one series")
        return _to_scan(images, uri)


#: How a DICOM data set written without the Part 10 preamble starts: its first tag's group,
#: 0002 (file meta) or 0008 (identifying), little or big endian.
_BARE_DATASET_STARTS = (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


def _series_member(file: str) -> DicomImage | None:
    """A DICOM image of a series folder; None for the other files found there.

    A member without the 128-byte preamble and ``DICM`` prefix is an error, not another file:
    skipped, it would leave the series a slice short (or a gap the spacing check may not see
    at either end) and the case would end with a mask of the wrong volume.
    """
    data = fetch(file)
    if not DicomReader.sniff(data[:132]):
        if file.lower().endswith(DicomReader.suffixes) or data[:2] in _BARE_DATASET_STARTS:
            raise ScanReadError(file, "DICOM file without the 128-byte preamble and DICM prefix (not a DICOM Part 10 file); "
                                      "the series would read a slice short")
        return None  # README, .DS_Store, ... sit next to series in real exports
    return load_image(data, file)  # None for a DICOMDIR or other file without pixels


def _to_scan(images: list[DicomImage], uri: str) -> Scan:
    """One Scan from one file (2D or multi-frame) or from the single-frame files of a series."""
    if len(images) > 1:
        for image in images:
            if len(image.frames) != 1:
                raise ScanReadError(image.uri, "multi-frame file inside a series folder of several files")
    frames = [frame for image in images for frame in image.frames]
    shapes = {frame.pixels.shape for frame in frames}
    if len(shapes) > 1:
        raise ScanReadError(uri, f"mixed image shapes in one series: {sorted(shapes)}")
    if len(frames) > 1:
        planes = [frame.plane for frame in frames]
        geo.check_same_geometry(planes, uri)
        frames = [frames[i] for i in geo.slice_order(planes)]
    metadata = dict(images[0].metadata)
    if len(images) > 1:
        metadata["files"] = len(images)
    return _assemble(frames, metadata, uri)


def _assemble(frames: list[Frame], metadata: dict, uri: str) -> Scan:
    """Stack frames (already in slice order) into ``(C, rows, cols[, slices])`` with its affine."""
    rescaled = any(f.slope != 1.0 or f.intercept != 0.0 for f in frames)
    if rescaled:
        slices = [f.pixels.astype(np.float32) * np.float32(f.slope) + np.float32(f.intercept) for f in frames]
    else:
        slices = [f.pixels for f in frames]
    first = frames[0].plane
    if len(frames) > 1:
        step = geo.slice_step([f.plane for f in frames], uri)
        array = np.moveaxis(np.stack(slices, axis=-1), 2, 0)  # (rows, cols, C, slices) -> (C, rows, cols, slices)
        spacing = (*first.pixel_spacing, float(np.linalg.norm(step)))
    else:
        step, array, spacing = None, np.moveaxis(slices[0], -1, 0), first.pixel_spacing
    if metadata["photometric_interpretation"] == "PALETTE COLOR":
        channels = ("index",)
    else:
        channels = ("gray",) if array.shape[0] == 1 else ("R", "G", "B", "A")[: array.shape[0]]
    metadata.update(rescaled=rescaled, has_geometry=first.position is not None)
    if rescaled and len({(f.slope, f.intercept) for f in frames}) == 1:
        metadata.update(rescale_slope=frames[0].slope, rescale_intercept=frames[0].intercept)
    return Scan(
        array=np.ascontiguousarray(array),
        channels=channels,
        spacing=spacing,
        affine=geo.ras_affine(first, step),
        source=uri,
        metadata=metadata,
    )
