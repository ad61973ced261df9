"""Cardiac left-ventricle MR: DICOM slices with PNG masks of the same stem.

Layout: ``training/*.dcm`` beside ``training/*.png``; ``test/*.dcm`` with masks in ``test/GT/*.png``.
The ``test/`` folder is the test split; the training patients are split into train/val by patient.
The patient key is a salted hash of the DICOM PatientID (or of the file-name prefix when the
header has none), so the manifest carries no identifier from the header.
"""

from __future__ import annotations

import io
import re

from raysegment import storage
from raysegment.ingest.base import IMPORTERS, Discovery, pseudonym

STEM_PATIENT = re.compile(r"^(?P<patient>.+?)[_-]IM[-_]", re.IGNORECASE)


def _patient_key(uri: str) -> str:
    import pydicom

    try:
        header = pydicom.dcmread(io.BytesIO(storage.read_bytes(uri)), stop_before_pixels=True, specific_tags=["PatientID"])
        value = str(header.get("PatientID", "") or "")
    except Exception:  # an unreadable header is reported later by the reader; fall back to the name
        value = ""
    if not value:
        match = STEM_PATIENT.match(storage.basename(uri))
        value = match["patient"] if match else storage.basename(uri).rsplit(".", 1)[0]
    return pseudonym(value, "lv")


@IMPORTERS.register("lv")
def discover(src: str, files: list[str] | None = None, **_) -> Discovery:
    found = Discovery()
    files = storage.list_files(src) if files is None else files
    by_folder: dict[str, dict[str, dict[str, str]]] = {}
    for uri in files:
        name = storage.basename(uri)
        stem, _, ext = name.rpartition(".")
        folder = storage.parent(uri)
        top = storage.basename(folder).lower()
        if ext.lower() == "dcm":
            group = "test" if top == "test" else "training" if top == "training" else None
            kind = "image"
        elif ext.lower() == "png":
            group = "test" if top == "gt" and storage.basename(storage.parent(folder)).lower() == "test" else "training" if top == "training" else None
            kind = "mask"
        else:
            continue
        if group is None:
            found.problems.append(f"{uri}: outside training/ and test/, left out")
            continue
        by_folder.setdefault(group, {}).setdefault(stem, {})[kind] = uri
    for group, stems in sorted(by_folder.items()):
        for stem, pair in sorted(stems.items()):
            if "image" not in pair:
                found.problems.append(f"{pair['mask']}: mask without a DICOM image, left out")
                continue
            if "mask" not in pair:
                found.problems.append(f"{pair['image']}: DICOM image without a mask, left out")
                continue
            found.rows.append(
                {
                    "case_id": f"{group}-{stem}",
                    "patient_id": _patient_key(pair["image"]),
                    "dataset": "lv",
                    "level": "slice",
                    "image_uris": [pair["image"]],
                    "channels": ["mr"],
                    "mask_uri": pair["mask"],
                    "format": "dicom",
                    "fixed_split": "test" if group == "test" else None,
                }
            )
    return found
