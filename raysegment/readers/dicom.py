"""DICOM files and series folders (pydicom 3; compressed syntaxes via the pylibjpeg plugins).

* One single-frame file: ``(C, rows, cols)``.
* One multi-frame file: ``(C, rows, cols, frames)``, frames ordered along the slice normal.
* A folder or S3 prefix holding one series: ``(C, rows, cols, slices)``, files ordered by
  ``ImagePositionPatient`` projected on the slice normal, then ``InstanceNumber``.

``RescaleSlope``/``RescaleIntercept`` are applied (output becomes float32) whenever they are not the
identity. Native pixel data shorter than the header promises is an error, never zero padding.
Metadata is a fixed list of technical fields: no patient names, IDs, dates or UIDs.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from raysegment import storage
from raysegment.errors import RaySegmentError, ScanReadError
from raysegment.readers import dicom_geometry as geo
from raysegment.readers.base import READERS, Reader, fetch, is_folder, library_errors, native, scan_error
from raysegment.scan import Scan

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_FETCH_THREADS = 8  # a series is hundreds of small objects; on S3 each GET is mostly waiting


@dataclass
class _Frame:
    """One decoded slice: pixels ``(rows, cols, samples)`` and where it lies."""

    pixels: np.ndarray
    plane: geo.Plane
    slope: float
    intercept: float


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
            # Only a URI that is not a file costs the extra folder check (one more request on S3).
            if is_folder(uri):
                return self.read_series(uri)
            raise
        return self.decode(data, uri)

    def decode(self, data: bytes, uri: str) -> Scan:
        return _scan_of_file(_parse(data, uri), uri)

    def read_series(self, uri: str) -> Scan:
        """Stack the single-frame images of one series folder (or S3 prefix) into a volume."""
        try:
            files = storage.list_files(uri, recursive=False)
        except RaySegmentError as exc:
            raise scan_error(uri, exc) from exc
        with ThreadPoolExecutor(_FETCH_THREADS) as pool:
            datasets = [d for d in pool.map(_image_dataset, files) if d is not None]
        if not datasets:
            raise ScanReadError(uri, f"no DICOM images among the {len(files)} files of this folder")
        series = {d.get("SeriesInstanceUID") for _, d in datasets}
        if len(series) > 1:
            raise ScanReadError(uri, f"folder holds {len(series)} DICOM series; point at one series")
        if len(datasets) == 1:
            return _scan_of_file(datasets[0][1], uri)
        frames = []
        for file, dataset in datasets:
            file_frames = _frames(dataset, file)
            if len(file_frames) != 1:
                raise ScanReadError(file, "multi-frame file inside a series folder of several files")
            frames.extend(file_frames)
        shapes = {f.pixels.shape for f in frames}
        if len(shapes) > 1:
            raise ScanReadError(uri, f"mixed image shapes in one series: {sorted(shapes)}")
        scan = _assemble(_ordered(frames, uri), datasets[0][1], uri, volume=True)
        scan.metadata["files"] = len(frames)
        return scan


def _scan_of_file(dataset, uri: str) -> Scan:
    if not any(k in dataset for k in _PIXEL_KEYWORDS):
        raise ScanReadError(uri, "DICOM file has no pixel data (truncated, or not an image)")
    frames = _frames(dataset, uri)
    if len(frames) == 1:
        return _assemble(frames, dataset, uri, volume=False)
    return _assemble(_ordered(frames, uri), dataset, uri, volume=True)


def _parse(data: bytes, uri: str):
    import pydicom

    with library_errors(uri, "not a readable DICOM file"):
        return pydicom.dcmread(io.BytesIO(data))


def _image_dataset(file: str):
    """``(file, dataset)`` for a DICOM image in a series folder, None for anything else there."""
    data = fetch(file)
    if not DicomReader.sniff(data[:132]):
        return None  # README, .DS_Store, ... sit next to series in real exports
    dataset = _parse(data, file)
    return (file, dataset) if any(k in dataset for k in _PIXEL_KEYWORDS) else None  # e.g. a DICOMDIR


def _frames(dataset, uri: str) -> list[_Frame]:
    """Decode every frame of one file, with its plane and rescale."""
    _check_native_length(dataset, uri)
    count = int(dataset.get("NumberOfFrames") or 1)
    with library_errors(uri, "cannot decode DICOM pixel data"):
        pixels = native(dataset.pixel_array)
        pixels = pixels.reshape(count, int(dataset.Rows), int(dataset.Columns), int(dataset.get("SamplesPerPixel") or 1))
    with library_errors(uri, "invalid DICOM geometry or rescale values"):
        return [
            _Frame(
                pixels=pixels[index],
                plane=_plane(dataset, index, count, uri),
                slope=float(_attr(dataset, index, "PixelValueTransformationSequence", "RescaleSlope") or 1.0),
                intercept=float(_attr(dataset, index, "PixelValueTransformationSequence", "RescaleIntercept") or 0.0),
            )
            for index in range(count)
        ]


def _check_native_length(dataset, uri: str) -> None:
    """Uncompressed pixel data must hold every byte the header announces (no zero padding)."""
    from pydicom.pixels.utils import get_expected_length

    syntax = _transfer_syntax(dataset)
    keyword = next(k for k in _PIXEL_KEYWORDS if k in dataset)
    if keyword == "PixelData" and (syntax is None or syntax.is_compressed):
        return  # encapsulated fragments are checked by their decoder
    with library_errors(uri, "incomplete DICOM image header"):
        expected = get_expected_length(dataset, unit="bytes")  # knows YBR_FULL_422 and 1-bit data
    found = len(dataset[keyword].value or b"")
    if found < expected:
        raise ScanReadError(uri, f"truncated DICOM pixel data: {found} bytes, the header needs {expected}")


def _attr(dataset, frame: int, sequence: str, keyword: str):
    """A value from the per-frame functional groups of an enhanced file, else the shared ones, else the top level."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        items = dataset.get(groups)
        if items and len(items) > index:
            inner = items[index].get(sequence)
            if inner and keyword in inner[0]:
                return inner[0][keyword].value
    return dataset.get(keyword)


def _plane(dataset, frame: int, count: int, uri: str) -> geo.Plane:
    orientation = _attr(dataset, frame, "PlaneOrientationSequence", "ImageOrientationPatient")
    position = _attr(dataset, frame, "PlanePositionSequence", "ImagePositionPatient")
    spacing = _attr(dataset, frame, "PixelMeasuresSequence", "PixelSpacing")
    thickness = _attr(dataset, frame, "PixelMeasuresSequence", "SpacingBetweenSlices") or _attr(
        dataset, frame, "PixelMeasuresSequence", "SliceThickness"
    )
    if position is not None and len(position) != 3:
        raise ScanReadError(uri, f"ImagePositionPatient has {len(position)} values, expected 3")
    return geo.Plane(
        orientation=geo.check_orientation(orientation, uri) if orientation else geo.AXIAL,
        position=tuple(float(v) for v in position) if position is not None else None,
        pixel_spacing=(float(spacing[0]), float(spacing[1])) if spacing else (1.0, 1.0),
        thickness=float(thickness) if thickness else 1.0,
        instance=frame if count > 1 else int(dataset.get("InstanceNumber") or 0),
    )


def _ordered(frames: list[_Frame], uri: str) -> list[_Frame]:
    planes = [f.plane for f in frames]
    geo.check_same_geometry(planes, uri)
    return [frames[i] for i in geo.slice_order(planes)]


def _assemble(frames: list[_Frame], dataset, uri: str, volume: bool) -> Scan:
    """Stack ordered frames into a Scan; ``dataset`` (the first file) supplies the metadata."""
    rescaled = any(f.slope != 1.0 or f.intercept != 0.0 for f in frames)
    if rescaled:
        slices = [f.pixels.astype(np.float32) * np.float32(f.slope) + np.float32(f.intercept) for f in frames]
    else:
        slices = [f.pixels for f in frames]
    first = frames[0].plane
    if volume:
        step = geo.slice_step([f.plane for f in frames], uri)
        array = np.stack(slices, axis=-1)  # (rows, cols, samples, slices)
        array = np.moveaxis(array, 2, 0)
        spacing = (*first.pixel_spacing, float(np.linalg.norm(step)))
    else:
        step, array, spacing = None, np.moveaxis(slices[0], -1, 0), first.pixel_spacing
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    if photometric == "PALETTE COLOR":
        channels = ("index",)
    else:
        channels = ("gray",) if array.shape[0] == 1 else ("R", "G", "B", "A")[: array.shape[0]]
    metadata = _metadata(dataset, photometric)
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


def _transfer_syntax(dataset):
    meta = getattr(dataset, "file_meta", None)
    return meta.get("TransferSyntaxUID") if meta is not None else None


def _metadata(dataset, photometric: str) -> dict:
    """Technical fields only; this list is the whole of what leaves the file."""
    syntax = _transfer_syntax(dataset)
    return {
        "format": "dicom",
        "modality": str(dataset.get("Modality", "")),
        "transfer_syntax": str(syntax or ""),
        "transfer_syntax_name": getattr(syntax, "name", ""),
        "photometric_interpretation": photometric,
        "rows": int(dataset.get("Rows") or 0),
        "columns": int(dataset.get("Columns") or 0),
        "bits_allocated": int(dataset.get("BitsAllocated") or 0),
        "bits_stored": int(dataset.get("BitsStored") or 0),
    }
