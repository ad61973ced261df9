"""Fixtures that write real DICOM files (pydicom, standard file format) for the reader tests."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pytest

from raysegment import storage

PATIENT = {"PatientName": "Doe^Jane", "PatientID": "PID-0042-XYZ", "PatientBirthDate": "19700101"}


def dicom_bytes(
    pixels: np.ndarray,
    *,
    orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    position=(0.0, 0.0, 0.0),
    spacing=(1.0, 1.0),
    thickness=1.0,
    instance=1,
    slope=None,
    intercept=None,
    series_uid="1.2.826.0.1.3680043.8.498.1",
) -> bytes:
    """A single-frame MR image (16-bit, explicit VR little endian) written as a standard DICOM file.

    Args:
        pixels: ``(rows, cols)`` integer array.
        position: ImagePositionPatient, or None to leave it out.
    """
    from pydicom import dcmwrite
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "MR"
    for keyword, value in PATIENT.items():
        setattr(ds, keyword, value)
    ds.InstanceNumber = instance
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
    ds.PixelSpacing = [float(v) for v in spacing]
    ds.SliceThickness = float(thickness)
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.astype("<i2").tobytes()
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


@dataclass
class Series:
    """What :func:`write_series` wrote: the volume in slice order and its geometry."""

    folder: str
    volume: np.ndarray  # (rows, cols, slices), ordered along the slice normal
    orientation: tuple[float, ...]
    origin: np.ndarray  # LPS position of slice 0
    spacing: tuple[float, float]
    step: float
    files: list[str]  # files[k] holds slice k


def write_series(
    folder: str,
    *,
    slices=5,
    shape=(6, 7),
    orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    origin=(-10.0, 20.0, 5.0),
    spacing=(0.5, 0.8),
    step=2.5,
    seed=0,
    **extra,
) -> Series:
    """Write one series, one file per slice, under shuffled names and with InstanceNumbers that
    run against the slice positions, so only sorting by position gives the right volume."""
    rng = np.random.default_rng(seed)
    volume = rng.integers(-500, 1500, size=(*shape, slices)).astype(np.int16)
    normal = np.cross(orientation[:3], orientation[3:])
    files = [""] * slices
    for k in rng.permutation(slices):
        uri = storage.join(folder, f"IM{rng.integers(1 << 30):010d}.dcm")
        position = np.asarray(origin) + k * step * normal
        data = dicom_bytes(
            volume[..., k], orientation=orientation, position=position, spacing=spacing,
            thickness=step, instance=int(slices - k), **extra,
        )
        storage.write_bytes(uri, data)
        files[k] = uri
    return Series(folder, volume, tuple(orientation), np.asarray(origin, float), spacing, step, files)


@pytest.fixture
def patient_fields():
    """The identifying values every fixture DICOM carries."""
    return dict(PATIENT)


@pytest.fixture
def make_dicom():
    return dicom_bytes


@pytest.fixture
def make_series():
    return write_series
