"""NIfTI masks keep the input's affine and header geometry, and read back as the same mask."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np

from raysegment import storage
from raysegment.readers import read_mask, read_scan
from raysegment.writers import WRITERS, Reference


def _input(tmp_path, qcode: int, scode: int) -> str:
    affine = np.array([[-0.9, 0, 0, 40.0], [0, -1.1, 0, 30.0], [0, 0, 2.5, -12.0], [0, 0, 0, 1]])
    image = nib.Nifti1Image(np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4), affine)
    image.header.set_qform(affine, code=qcode)
    image.header.set_sform(affine, code=scode)
    uri = str(tmp_path / "scan.nii.gz")
    nib.save(image, uri)
    return uri


def _reference(scan, names=("tumor",)) -> Reference:
    return Reference(case_id="case-1", affine=scan.affine, spacing=scan.spacing, metadata=scan.metadata,
                     source_uris=[scan.source], class_names=list(names))


def test_affine_and_form_codes_are_the_inputs(tmp_path):
    scan = read_scan(_input(tmp_path, qcode=1, scode=4))
    mask = np.zeros((1, 6, 5, 4), np.uint8)
    mask[0, 1:3, 2:4, 1] = 1
    out = tmp_path / "mask.nii.gz"
    storage.write_bytes(str(out), WRITERS.get("nifti")().encode(mask, _reference(scan)))
    written = nib.load(out)
    np.testing.assert_allclose(written.affine, scan.affine)
    assert int(written.header["qform_code"]) == 1 and int(written.header["sform_code"]) == 4
    np.testing.assert_array_equal(read_mask(str(out)).array, mask)


def test_several_classes_become_named_channels(tmp_path):
    scan = read_scan(_input(tmp_path, qcode=2, scode=0))
    mask = (np.random.default_rng(0).random((3, 6, 5, 4)) > 0.5).astype(np.uint8)
    out = str(tmp_path / "mask.nii.gz")
    storage.write_bytes(out, WRITERS.get("nifti")().encode(mask, _reference(scan, ("WT", "TC", "ET"))))
    back = read_scan(out)
    assert back.channels == ("WT", "TC", "ET")
    np.testing.assert_array_equal(back.array, mask)
    np.testing.assert_allclose(back.affine, scan.affine)


def test_same_mask_same_bytes(tmp_path):
    scan = read_scan(_input(tmp_path, qcode=1, scode=1))
    mask = np.ones((1, 6, 5, 4), np.uint8)
    writer = WRITERS.get("nifti")()
    first, second = writer.encode(mask, _reference(scan)), writer.encode(mask, _reference(scan))
    assert first == second and gzip.decompress(first)  # a re-run rewrites identical files


def test_slice_of_a_volume_gets_its_own_affine(tmp_path):
    volume = read_scan(_input(tmp_path, qcode=1, scode=1))
    piece = volume.slice(2)
    out = str(tmp_path / "slice.nii.gz")
    storage.write_bytes(out, WRITERS.get("nifti")().encode(np.ones((1, 6, 5), np.uint8), _reference(piece)))
    np.testing.assert_allclose(nib.load(out).affine, piece.affine)
