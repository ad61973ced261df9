"""Kaggle "lgg-mri-segmentation" (``kaggle_3m/``): TCGA lower-grade glioma FLAIR slices.

Layout: a folder per patient scan ``TCGA_XX_NNNN_YYYYMMDD/`` holding ``<folder>_<k>.tif`` (RGB:
pre-contrast, FLAIR, post-contrast) and ``<folder>_<k>_mask.tif``; ``data.csv`` and a README sit
beside them and are not scans. Images and masks are paired by (folder, k) only: an image without
a mask or a mask without an image is reported and left out, never paired with a neighbour.
"""

from __future__ import annotations

import re

from raysegment import storage
from raysegment.ingest.base import IMPORTERS, Discovery

PATIENT_DIR = re.compile(r"^(?P<patient>TCGA_[A-Z0-9]{2}_[A-Z0-9]{4})_(?P<date>\d{8})$")
SLICE_FILE = re.compile(r"^(?P<stem>.+)_(?P<k>\d+)(?P<mask>_mask)?\.tiff?$", re.IGNORECASE)
CHANNELS = ["pre-contrast", "flair", "post-contrast"]


@IMPORTERS.register("lgg")
def discover(src: str, files: list[str] | None = None, **_) -> Discovery:
    found = Discovery()
    images: dict[tuple[str, int], str] = {}
    masks: dict[tuple[str, int], str] = {}
    patients: dict[str, str | None] = {}  # folder -> patient id (None: not a patient folder); one match per folder, not per file
    for uri in storage.list_files(src) if files is None else files:
        folder, name = uri.rsplit("/", 2)[-2:]  # listed URIs are normalised already: no per-file normalize (archives hold 10^5 files)
        if not name.lower().endswith((".tif", ".tiff")):
            continue  # data.csv, README and other side files
        if folder not in patients:
            patient_dir = PATIENT_DIR.match(folder)
            patients[folder] = patient_dir["patient"] if patient_dir else None
        match = SLICE_FILE.match(name)
        if patients[folder] is None:
            found.problems.append(f"{uri}: TIFF outside a TCGA_XX_NNNN_YYYYMMDD patient folder, left out")
        elif not match or match["stem"] != folder:
            found.problems.append(f"{uri}: name does not follow {folder}_<k>[_mask].tif, left out")
        else:
            (masks if match["mask"] else images)[(folder, int(match["k"]))] = uri
    for key in sorted(images.keys() - masks.keys()):
        found.problems.append(f"{images[key]}: image without a mask, left out")
    for key in sorted(masks.keys() - images.keys()):
        found.problems.append(f"{masks[key]}: mask without an image, left out")
    for folder, k in sorted(images.keys() & masks.keys()):
        found.rows.append(
            {
                "case_id": f"{folder}_{k}",
                "patient_id": patients[folder],
                "dataset": "lgg",
                "level": "slice",
                "image_uris": [images[(folder, k)]],
                "channels": CHANNELS,
                "mask_uri": masks[(folder, k)],
                "slice_index": k - 1,
                "volume_id": folder,
                "format": "tiff",
            }
        )
    return found
