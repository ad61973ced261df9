"""BraTS 2020: one folder per case of four co-registered NIfTI modalities and a label map.

Layout: ``BraTS20_Training_NNN/BraTS20_Training_NNN_{flair,t1,t1ce,t2,seg}.nii[.gz]``, possibly
under ``MICCAI_BraTS2020_TrainingData/``, with CSV side files; validation cases
(``BraTS20_Validation_NNN``) have no seg and become ``unlabeled`` rows. A seg file named against the
pattern (the real set's case 355) is still used when it is the one non-modality NIfTI in the folder,
and reported. Labels {1 necrotic core, 2 edema, 4 enhancing} become whole tumour / tumour core /
enhancing tumour regions in preprocessing (``BRATS_REGIONS``), so the mapping is configuration.
"""

from __future__ import annotations

import re
from collections import defaultdict

from raysegment import storage
from raysegment.ingest.base import IMPORTERS, Discovery

MODALITIES = ("flair", "t1", "t1ce", "t2")
CASE_DIR = re.compile(r"^BraTS\d*_(Training|Validation)_\d+$")
NIFTI = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
# Region -> raw labels, the BraTS convention (whole tumour, tumour core, enhancing tumour).
BRATS_REGIONS = {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}


def _role(case: str, name: str) -> str | None:
    stem = NIFTI.sub("", name)
    if stem.lower().startswith(case.lower() + "_"):
        suffix = stem[len(case) + 1 :].lower()
        if suffix in MODALITIES or suffix == "seg":
            return suffix
    return None


@IMPORTERS.register("brats")
def discover(src: str, files: list[str] | None = None, **_) -> Discovery:
    found = Discovery()
    by_case: dict[str, list[str]] = defaultdict(list)
    for uri in storage.list_files(src) if files is None else files:
        folder = storage.basename(storage.parent(uri))
        if CASE_DIR.match(folder) and NIFTI.search(uri):
            by_case[folder].append(uri)
    for case in sorted(by_case):
        files: dict[str, str] = {}
        others = []
        for uri in by_case[case]:
            role = _role(case, storage.basename(uri))
            (files.__setitem__(role, uri) if role else others.append(uri))
        missing = [m for m in MODALITIES if m not in files]
        if missing:
            found.problems.append(f"{storage.parent(by_case[case][0])}: missing modalities {missing}, case left out")
            continue
        if "seg" not in files and len(others) == 1:
            files["seg"] = others[0]
            found.problems.append(f"{others[0]}: seg file not named {case}_seg.nii.gz, used as the seg of {case}")
        elif "seg" not in files and others:
            found.problems.append(f"{storage.parent(files['flair'])}: {len(others)} unrecognised NIfTI files and no seg, case kept unlabeled")
        found.rows.append(
            {
                "case_id": case,
                "patient_id": case,
                "dataset": "brats",
                "level": "volume",
                "image_uris": [files[m] for m in MODALITIES],
                "channels": list(MODALITIES),
                "mask_uri": files.get("seg"),
                "volume_id": case,
                "format": "nifti",
            }
        )
    return found
