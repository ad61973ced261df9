"""``raysegment sample-data`` writes each real layout, deterministically per seed."""

from __future__ import annotations

import hashlib
import os

import pytest
from typer.testing import CliRunner

from raysegment.cli import app


def _digest(root):
    h = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            h.update(name.encode())
            with open(os.path.join(folder, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()


@pytest.mark.parametrize("kind, expected", [
    ("lgg", "kaggle_3m/TCGA_CS_7000_19950101/TCGA_CS_7000_19950101_1_mask.tif"),
    ("brats", "MICCAI_BraTS2020_TrainingData/BraTS20_Training_001/BraTS20_Training_001_t1ce.nii.gz"),
    ("lv", "test/GT/SCD00004_IM-0001-0001.png"),
    ("msd", "imagesTs/sample_004.nii.gz"),
    ("nnunet", "imagesTr/sample_003_0001.nii.gz"),
])
def test_layouts(tmp_path, kind, expected):
    result = CliRunner().invoke(app, ["sample-data", str(tmp_path / "a"), "--kind", kind, "--patients", "3", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a" / expected).exists()
    CliRunner().invoke(app, ["sample-data", str(tmp_path / "b"), "--kind", kind, "--patients", "3", "--seed", "1"])
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_unknown_kind_lists_valid_ones(tmp_path):
    result = CliRunner().invoke(app, ["sample-data", str(tmp_path), "--kind", "ct"])
    assert result.exit_code == 2
    assert "valid: brats, lgg, lv, msd, nnunet" in result.output


def test_help_names_every_layout():
    from raysegment.sample_data import GENERATORS

    result = CliRunner().invoke(app, ["sample-data", "--help"])
    assert all(name in result.output for name in GENERATORS.names())
