"""NIfTI-1 ``.nii.gz`` masks with the input's affine and header geometry (qform/sform codes)."""

from __future__ import annotations

import gzip

import numpy as np

from raysegment.writers.base import WRITERS, Reference, Writer

_INTENT_NAME_BYTES = 16


@WRITERS.register("nifti")
class NiftiWriter(Writer):
    name = "nifti"
    suffix = ".nii.gz"

    def encode(self, array: np.ndarray, reference: Reference) -> bytes:
        """3D (or 2D) for one class; 4D ``(i, j, k, K)`` with the class names in intent_name for several."""
        import nibabel as nib

        data = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
        image = nib.Nifti1Image(np.ascontiguousarray(data), None)
        header = image.header
        qform, qcode, sform, scode = _geometry(reference)
        header.set_qform(qform, code=qcode)
        header.set_sform(sform, code=scode)
        header.set_xyzt_units(reference.metadata.get("xyz_units") or "mm")
        names = ",".join(reference.class_names)
        if array.shape[0] > 1 and len(names.encode()) <= _INTENT_NAME_BYTES:
            header.set_intent("none", name=names)  # the NIfTI reader turns these back into channel names
        header.set_slope_inter(1.0, 0.0)
        return gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)  # mtime=0: same mask, same bytes

    def encode_label_map(self, labels: np.ndarray, reference: Reference) -> bytes:
        """One 3D (or 2D) integer image."""
        return self.encode(labels[None], reference)


def _geometry(reference: Reference) -> tuple[np.ndarray, int, np.ndarray, int]:
    """(qform, qform code, sform, sform code): the input header's own when they give the mask's affine."""
    meta = reference.metadata
    affine = np.asarray(reference.affine, float)
    if meta.get("format") == "nifti" and "qform" in meta and "sform" in meta:
        qform, sform = np.asarray(meta["qform"]), np.asarray(meta["sform"])
        # nibabel's affine is the sform when its code is set, else the qform; a slice cut from the
        # volume has another affine, and then the header of the volume no longer applies.
        used = sform if meta["sform_code"] > 0 else qform
        if np.allclose(used, affine):
            return qform, int(meta["qform_code"]), sform, int(meta["sform_code"])
    return affine, 1, affine, 1  # scanner-anatomical coordinates
