"""No silent truncation: a volume that lost slices is an error, never a shorter volume."""

from __future__ import annotations

import io
import os
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import tifffile

from raysegment.errors import ScanReadError
from raysegment.readers import read_scan

STACK = np.arange(6 * 16 * 16, dtype=np.uint16).reshape(6, 16, 16)


@pytest.mark.parametrize("options", [{}, {"compression": "zlib"}, {"imagej": True, "metadata": {"axes": "ZYX"}}, {"bigtiff": True}, {"metadata": None}],
                         ids=["shaped", "zlib", "imagej", "bigtiff", "plain"])
def test_tiff_stack_cut_at_a_page_boundary_is_an_error(tmp_path, options):
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, STACK, **options)
    data = buffer.getvalue()
    (tmp_path / "whole.tif").write_bytes(data)
    assert read_scan(str(tmp_path / "whole.tif")).num_slices == 6
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        boundary = tif.pages[4].offset  # pages 0-3 stay whole, the rest is gone
    (tmp_path / "cut.tif").write_bytes(data[:boundary])
    with pytest.raises(ScanReadError, match=r"cut\.tif: truncated TIFF: page 5 lies past the end"):
        read_scan(str(tmp_path / "cut.tif"))


def test_a_volume_with_another_slice_count_than_the_manifest_is_an_error(tmp_path, make_series):
    tifffile.imwrite(tmp_path / "stack.tif", STACK)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 6), np.float32), np.eye(4)), tmp_path / "volume.nii.gz")
    series = make_series(str(tmp_path / "series"), slices=6)
    for uri in (str(tmp_path / "stack.tif"), str(tmp_path / "volume.nii.gz"), series.folder):
        assert read_scan(uri, num_slices=6).num_slices == 6
        with pytest.raises(ScanReadError, match="6 slices where the manifest has 7"):
            read_scan(uri, num_slices=7)
    os.remove(series.files[-1])  # an end slice: the spacing of the others stays even
    with pytest.raises(ScanReadError, match="5 slices where the manifest has 6"):
        read_scan(series.folder, num_slices=6)


def test_series_member_without_preamble_is_an_error_not_a_skipped_file(tmp_path, make_series):
    series = make_series(str(tmp_path / "series"), slices=4)
    (tmp_path / "series" / "README").write_text("exported by a scanner")  # still left out
    stripped = series.files[0]
    with open(stripped, "rb") as f:
        data = f.read()
    for name, content in ((os.path.basename(stripped), data[132:]), ("IM_no_suffix", data[132:])):
        os.remove(stripped)
        stripped = os.path.join(series.folder, name)
        with open(stripped, "wb") as f:
            f.write(content)  # a bare data set: no 128-byte preamble, no "DICM"
        with pytest.raises(ScanReadError, match=f"{name}: DICOM file without the 128-byte preamble"):
            read_scan(series.folder)


def test_inference_records_a_short_volume_as_a_failed_read(tmp_path):
    from raysegment.infer.decode import read_case

    tifffile.imwrite(tmp_path / "stack.tif", STACK[:5])
    row = {"case_id": "c1", "level": "volume", "image_uris": [str(tmp_path / "stack.tif")], "channels": ["gray"], "num_slices": 6}
    entry, slices = read_case(row, SimpleNamespace(preprocess_config=None))
    assert slices is None and (entry["status"], entry["stage"]) == ("failed", "read")
    assert "5 slices where the manifest has 6" in entry["error"] and "stack.tif" in entry["error"]
