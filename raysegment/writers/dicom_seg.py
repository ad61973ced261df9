"""DICOM Segmentation objects (highdicom) for DICOM input, ``--format dicom-seg``.

A SEG must reference its source images (study, series and SOP instance UIDs), and the standard
requires the Patient and General Study modules, which highdicom copies from the source. Outputs
carry case ids only: highdicom is handed de-identified copies of the sources, and the SEG it makes
is de-identified again (:mod:`raysegment.writers.deidentify`: the DICOM Basic Application Level
Confidentiality Profile with the Retain UIDs Option, so the SEG still names its sources; the
patient's name and id become the case id).

Sources: one single-frame DICOM file, or a series folder (ordered as the DICOM reader stacks it:
by position along the slice normal, then InstanceNumber).
"""

from __future__ import annotations

import io

import numpy as np

from raysegment import storage
from raysegment.errors import ConfigError, ScanReadError
from raysegment.writers.base import WRITERS, Reference, Writer
from raysegment.writers.deidentify import deidentify

#: Type 2 attributes hd.seg.Segmentation reads from its first source without a default: a source
#: may lack them, and the de-identified copy it is given has them empty then.
_REQUIRED_OF_SOURCE = ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate", "StudyTime")


@WRITERS.register("dicom-seg")
class DicomSegWriter(Writer):
    name = "dicom-seg"
    takes_label_map = False
    suffix = ".dcm"
    holds_floats = False

    def encode(self, array: np.ndarray, reference: Reference) -> bytes:
        import highdicom as hd
        from pydicom.sr.codedict import codes
        from pydicom.uid import generate_uid

        sources = _source_datasets(reference)
        for source in sources:
            deidentify(source, reference.case_id)
            for keyword in _REQUIRED_OF_SOURCE:
                if keyword not in source:
                    setattr(source, keyword, "")
        # (K, rows, cols[, S]) -> (frames, rows, cols, K), frames in source order.
        frames = array[..., None] if array.ndim == 3 else array
        frames = np.moveaxis(frames, (0, -1), (-1, 0)).astype(bool)
        if len(sources) != frames.shape[0]:
            raise ConfigError(f"case {reference.case_id}: {frames.shape[0]} mask slices for {len(sources)} DICOM source images")
        algorithm = hd.AlgorithmIdentificationSequence(name="raysegment", version="1", family=codes.cid7162.ArtificialIntelligence)
        segments = [
            hd.seg.SegmentDescription(
                segment_number=k + 1,
                segment_label=name[:64],
                segmented_property_category=codes.cid7150.Tissue,
                segmented_property_type=codes.cid7166.ConnectiveTissue,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
            )
            for k, name in enumerate(reference.class_names or [f"class{k}" for k in range(frames.shape[-1])])
        ]
        # UIDs derived from the case and content: a re-run writes the same object.
        seed = [reference.case_id, str(np.packbits(frames).tobytes().hex()[:64])]
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=segments,
            series_instance_uid=generate_uid(entropy_srcs=seed + ["series"]),
            series_number=900,
            sop_instance_uid=generate_uid(entropy_srcs=seed + ["instance"]),
            instance_number=1,
            manufacturer="raysegment",
            manufacturer_model_name="raysegment",
            software_versions="1",
            device_serial_number="0",
            omit_empty_frames=False,
        )
        deidentify(seg, reference.case_id)
        buffer = io.BytesIO()
        seg.save_as(buffer)
        return buffer.getvalue()


def _source_datasets(reference: Reference) -> list:
    """The source images of the case's first channel file, in the reader's slice order."""
    import pydicom

    uri = reference.source_uris[0]
    files = [uri] if not storage.is_dir(uri) else storage.list_files(uri, recursive=False)
    datasets = []
    for file in files:
        data = storage.read_bytes(file)
        if data[128:132] != b"DICM":
            continue
        datasets.append(pydicom.dcmread(io.BytesIO(data)))
    if not datasets:
        raise ScanReadError(uri, "no DICOM source images to reference in the SEG")
    if any("FrameOfReferenceUID" not in d for d in datasets):
        raise ScanReadError(uri, "DICOM source has no FrameOfReferenceUID, which a SEG must share; use --format nifti")
    if any(int(d.get("NumberOfFrames") or 1) > 1 for d in datasets):
        raise ConfigError(f"{uri}: multi-frame DICOM sources are not supported by --format dicom-seg; use --format nifti")
    return sorted(datasets, key=_position)


def _position(dataset) -> tuple[float, int]:
    orientation = np.asarray(dataset.get("ImageOrientationPatient") or [1, 0, 0, 0, 1, 0], float)
    normal = np.cross(orientation[:3], orientation[3:])
    position = np.asarray(dataset.get("ImagePositionPatient") or [0, 0, 0], float)
    return float(position @ normal), int(dataset.get("InstanceNumber") or 0)
