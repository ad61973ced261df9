"""One DICOM file -> its decoded frames, their planes and rescale, and non-identifying metadata.

pydicom parses element values lazily, so any attribute access can fail on a corrupt file; every
header value is therefore read inside :func:`~raysegment.readers.base.library_errors`. Native pixel
data shorter than the header promises is an error here, never zero padding.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np

from raysegment.errors import ScanReadError
from raysegment.readers import dicom_geometry as geo
from raysegment.readers.base import library_errors, native

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass
class Frame:
    """One decoded slice: pixels ``(rows, cols, samples)``, where it lies, and its rescale."""

    pixels: np.ndarray
    plane: geo.Plane
    slope: float
    intercept: float


@dataclass
class DicomImage:
    """One DICOM file: its frames in file order and the technical fields kept as metadata.

    Attributes:
        series: ``SeriesInstanceUID``, only to check that a folder holds one series; a UID is an
            identifier, so it never goes into ``metadata``.
    """

    uri: str
    frames: list[Frame]
    metadata: dict
    series: str | None


def load_image(data: bytes, uri: str) -> DicomImage | None:
    """Parse and decode one file; None if it is DICOM but no image (a DICOMDIR, a report)."""
    import pydicom

    with library_errors(uri, "not a readable DICOM file"):
        dataset = pydicom.dcmread(io.BytesIO(data))
    if not any(keyword in dataset for keyword in _PIXEL_KEYWORDS):
        # pydicom drops a data set that ends inside encapsulated pixel data, or just its pixel data.
        if len(dataset) == 0 or "Rows" in dataset:
            raise ScanReadError(uri, "truncated DICOM file: its pixel data could not be read")
        return None
    with library_errors(uri, "invalid DICOM image header"):
        count = int(dataset.get("NumberOfFrames") or 1)
        shape = (count, int(dataset.Rows), int(dataset.Columns), int(dataset.get("SamplesPerPixel") or 1))
        _check_native_length(dataset, uri)
        planes = _planes(dataset, count, uri)
        rescales = [_rescale(dataset, frame) for frame in range(count)]
        metadata = _metadata(dataset)
        series = str(dataset.get("SeriesInstanceUID", "")) or None
    with library_errors(uri, "cannot decode DICOM pixel data"):
        pixels = native(dataset.pixel_array).reshape(shape)
    frames = [Frame(pixels[i], planes[i], *rescales[i]) for i in range(count)]
    return DicomImage(uri=uri, frames=frames, metadata=metadata, series=series)


def _check_native_length(dataset, uri: str) -> None:
    """Uncompressed pixel data must hold every byte the header announces."""
    from pydicom.pixels.utils import get_expected_length

    syntax = _transfer_syntax(dataset)
    keyword = next(k for k in _PIXEL_KEYWORDS if k in dataset)
    if keyword == "PixelData" and (syntax is None or syntax.is_compressed):
        return  # encapsulated fragments are checked by their decoder
    expected = int(get_expected_length(dataset, unit="bytes"))  # knows YBR_FULL_422 and 1-bit data
    found = len(dataset[keyword].value or b"")
    if found < expected:
        raise ScanReadError(uri, f"truncated DICOM pixel data: {found} bytes, the header needs {expected}")


def _attr(dataset, frame: int, sequence: str, keyword: str):
    """A value from an enhanced file's per-frame functional groups, else the shared ones, else the top level."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        items = dataset.get(groups)
        if items and len(items) > index:
            inner = items[index].get(sequence)
            if inner and keyword in inner[0]:
                return inner[0][keyword].value
    return dataset.get(keyword)


def _planes(dataset, count: int, uri: str) -> list[geo.Plane]:
    """The plane of every frame."""
    planes = []
    for frame in range(count):
        orientation = _attr(dataset, frame, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = _attr(dataset, frame, "PixelMeasuresSequence", "PixelSpacing")
        thickness = _attr(dataset, frame, "PixelMeasuresSequence", "SpacingBetweenSlices") or _attr(
            dataset, frame, "PixelMeasuresSequence", "SliceThickness"
        )
        plane = geo.Plane(
            orientation=geo.check_orientation(orientation, uri) if orientation else geo.AXIAL,
            pixel_spacing=(float(spacing[0]), float(spacing[1])) if spacing else (1.0, 1.0),
            thickness=float(thickness) if thickness else 1.0,
            instance=frame if count > 1 else int(dataset.get("InstanceNumber") or 0),
        )
        planes.append(replace(plane, position=_position(dataset, frame, count, plane, uri)))
    return planes


def _position(dataset, frame: int, count: int, plane: geo.Plane, uri: str) -> tuple[float, float, float] | None:
    """``ImagePositionPatient`` of one frame.

    Enhanced multi-frame files give one per frame. Older multi-frame files (RT dose, cine) give the
    first frame's only, and the others follow along the normal at ``GridFrameOffsetVector`` (or
    slice thickness) steps.
    """
    position = _attr(dataset, frame, "PlanePositionSequence", "ImagePositionPatient")
    if position is None:
        return None
    if len(position) != 3:
        raise ScanReadError(uri, f"ImagePositionPatient has {len(position)} values, expected 3")
    position = np.array([float(v) for v in position])
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    if count > 1 and not (per_frame and len(per_frame) == count and "PlanePositionSequence" in per_frame[frame]):
        offsets = dataset.get("GridFrameOffsetVector")
        offset = float(offsets[frame]) if offsets is not None and len(offsets) == count else frame * plane.thickness
        position = position + offset * plane.normal
    return tuple(float(v) for v in position)


def _rescale(dataset, frame: int) -> tuple[float, float]:
    slope = _attr(dataset, frame, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _attr(dataset, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    return (1.0 if slope is None else float(slope)), (0.0 if intercept is None else float(intercept))


def _transfer_syntax(dataset):
    meta = getattr(dataset, "file_meta", None)
    return meta.get("TransferSyntaxUID") if meta is not None else None


def _metadata(dataset) -> dict:
    """Technical fields only: this list is all that leaves the file."""
    syntax = _transfer_syntax(dataset)
    return {
        "format": "dicom",
        "modality": str(dataset.get("Modality", "")),
        "transfer_syntax": str(syntax or ""),
        "transfer_syntax_name": getattr(syntax, "name", ""),
        "photometric_interpretation": str(dataset.get("PhotometricInterpretation", "")),
        "rows": int(dataset.Rows),
        "columns": int(dataset.Columns),
        "bits_allocated": int(dataset.get("BitsAllocated") or 0),
        "bits_stored": int(dataset.get("BitsStored") or 0),
    }
