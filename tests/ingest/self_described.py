"""Helpers for the tests of the importers of self-described datasets (msd, nnunet, table)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np

#: The affine of the generated samples (raysegment.sample_data): 1 x 1 x 2 mm voxels.
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
REAL_DATA = Path(os.environ.get("RAYSEGMENT_REAL_DATA", Path(__file__).parents[2].parent / "shared" / "data"))


def save_nifti(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


def edit_json(path: Path, **changes) -> dict:
    """Rewrite a dataset.json with ``changes``; a value None removes the key."""
    described = json.loads(path.read_text())
    described.update(changes)
    described = {k: v for k, v in described.items() if v is not None}
    path.write_text(json.dumps(described))
    return described


def label_values(path) -> set[int]:
    return {int(v) for v in np.unique(np.asarray(nib.load(str(path)).dataobj))}


def foreground_slices(path) -> list[int]:
    labels = np.asarray(nib.load(str(path)).dataobj)
    return [int(k) for k in np.flatnonzero(labels.any(axis=(0, 1)))]
