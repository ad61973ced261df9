"""``raysegment inspect``: table and JSON output, local and s3://, and the one-line error."""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from raysegment import storage
from raysegment.cli import app
from raysegment.readers import read_scan

AFFINE = np.diag([-0.5, 0.75, 2.0, 1.0])


@pytest.fixture
def volume(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 7
    path = tmp_path / "brain.nii.gz"
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    return str(path)


def test_table_shows_shape_dtype_spacing_orientation_range_channels(volume):
    result = CliRunner().invoke(app, ["inspect", volume])

    assert result.exit_code == 0, result.output
    for expected in ("1 x 4 x 5 x 6", "int16", "0.5 x 0.75 x 2", "LAS", "-7 .. 112", "gray", "nifti_version"):
        assert expected in result.stdout


def test_json_is_exactly_one_object_equal_to_the_scan_summary(volume):
    result = CliRunner().invoke(app, ["inspect", volume, "--json"])

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary == json.loads(json.dumps(read_scan(volume).summary()))
    assert summary["shape"] == [1, 4, 5, 6] and summary["orientation"] == "LAS"
    assert (summary["min"], summary["max"]) == (-7.0, 112.0)


def test_corrupt_file_exits_2_with_one_line_naming_it(tmp_path):
    bad = tmp_path / "broken.nii"
    bad.write_bytes(b"not a nifti file at all" * 20)

    result = CliRunner().invoke(app, ["inspect", str(bad)])

    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: ")
    assert "Traceback" not in result.output


def test_format_option_reads_a_file_with_a_misleading_ending(tmp_path, volume):
    odd = tmp_path / "brain.bin"
    odd.write_bytes(gzip.decompress(open(volume, "rb").read()))

    result = CliRunner().invoke(app, ["inspect", str(odd), "--format", "nifti", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["shape"] == [1, 4, 5, 6]


@pytest.mark.s3
def test_inspect_s3_uri(s3_bucket, volume):
    uri = f"{s3_bucket}/scans/brain.nii.gz"
    storage.write_bytes(uri, open(volume, "rb").read())

    as_json = CliRunner().invoke(app, ["inspect", uri, "--json"])
    as_table = CliRunner().invoke(app, ["inspect", uri])
    missing = CliRunner().invoke(app, ["inspect", f"{s3_bucket}/scans/none.nii.gz"])

    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["source"] == uri
    assert as_table.exit_code == 0 and "1 x 4 x 5 x 6" in as_table.stdout
    assert missing.exit_code == 2 and "none.nii.gz: no such file" in missing.stderr
