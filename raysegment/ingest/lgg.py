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
#: A patient folder and one of its slices or masks, named as the layout says (``SLICE_FILE``'s case aside).
SLICE_PATH = re.compile(r"(?P<folder>TCGA_[A-Z0-9]{2}_[A-Z0-9]{4}_\d{8})/(?P=folder)_(?P<k>\d+)(?P<mask>_mask)?\.(?i:tiff?)")
CHANNELS = ["pre-contrast", "flair", "post-contrast"]


@IMPORTERS.register("lgg")
def discover(src: str, files: list[str] | None = None, **_) -> Discovery:
    found = Discovery()
    images: dict[tuple[str, int], str] = {}
    masks: dict[tuple[str, int], str] = {}
    for uri in storage.list_files(src) if files is None else files:
        # Archives hold 10^5 files: one match over the last two parts of the (already normalised)
        # URI takes the usual file; anything else goes the long way, which says what is wrong.
        usual = SLICE_PATH.fullmatch(uri, uri.rfind("/", 0, uri.rfind("/")) + 1)
        if usual:
            folder, k, mask = usual.group("folder", "k", "mask")
        else:
            folder, name = uri.rsplit("/", 2)[-2:]
            if not name.lower().endswith((".tif", ".tiff")):
                continue  # data.csv, README and other side files
            match = SLICE_FILE.match(name)
            if not PATIENT_DIR.match(folder):
                found.problems.append(f"{uri}: TIFF outside a TCGA_XX_NNNN_YYYYMMDD patient folder, left out")
                continue
            if not match or match["stem"] != folder:
                found.problems.append(f"{uri}: name does not follow {folder}_<k>[_mask].tif, left out")
                continue
            k, mask = match["k"], match["mask"]
        (masks if mask else images)[(folder, int(k))] = uri
    for key in sorted(images.keys() - masks.keys()):
        found.problems.append(f"{images[key]}: image without a mask, left out")
    for key in sorted(masks.keys() - images.keys()):
        found.problems.append(f"{masks[key]}: mask without an image, left out")
    patients: dict[str, str] = {}  # folder -> patient id, one match per folder
    for folder, k in sorted(images.keys() & masks.keys()):
        if folder not in patients:
            patients[folder] = PATIENT_DIR.match(folder)["patient"]
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
