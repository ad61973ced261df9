"""nnU-Net v2 raw importer: channel files in order, region-based labels, and what a contradicting dataset.json gets."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from self_described import edit_json, foreground_slices, save_nifti

from raysegment.ingest import DatasetError, ingest, labels_of


def test_sample_channel_files_in_order(nnunet_sample, tmp_path):
    out = tmp_path / "n.parquet"
    result = ingest("nnunet", str(nnunet_sample), str(out))
    df = result.manifest.set_index("case_id")
    assert list(df.index) == [f"sample_{i:03d}" for i in range(1, 7)] and result.problems == []
    row = df.loc["sample_003"]
    assert list(row["image_uris"]) == [str(nnunet_sample / "imagesTr" / f"sample_003_000{k}.nii.gz") for k in (0, 1)]
    assert list(row["channels"]) == ["T1", "T2"]
    assert row["mask_uri"] == str(nnunet_sample / "labelsTr" / "sample_003.nii.gz")
    assert list(row["foreground_slices"]) == foreground_slices(row["mask_uri"]) and row["num_slices"] == 6
    test = df.loc[["sample_005", "sample_006"]]
    assert set(test["split"]) == {"unlabeled"} and test["mask_uri"].isna().all()
    assert list(test.loc["sample_006", "image_uris"]) == [str(nnunet_sample / "imagesTs" / f"sample_006_000{k}.nii.gz") for k in (0, 1)]
    assert set(df["dataset"]) == {"nnunet"}
    assert result.labels == labels_of(str(out)) == {"anterior": [1], "posterior": [2]}


def test_region_based_and_ignore_labels(nnunet_root):
    edit_json(nnunet_root / "dataset.json", labels={"background": 0, "whole": [1, 2], "posterior": 2, "cyst": 4, "ignore": 3},
              regions_class_order=[1, 2])
    result = ingest("nnunet", str(nnunet_root))
    uri = nnunet_root / "dataset.json"
    assert result.labels == {"whole": [1, 2], "posterior": [2]}
    assert result.problems == [
        f"{uri}: label 'ignore' (values [3]) marks unannotated voxels; raysegment has no ignore label, they are read as background",
        f"{uri}: label 'cyst' (values [4]) occurs in none of the 4 label files, left out of the training labels",
    ]


def test_files_without_partner_or_name_are_problems(nnunet_root):
    images, labels = nnunet_root / "imagesTr", nnunet_root / "labelsTr"
    (labels / "sample_004.nii.gz").unlink()
    for k in (0, 1):
        (images / f"sample_002_000{k}.nii.gz").unlink()
    (images / "notes.txt").write_text("scanner protocol")
    shutil.copy(images / "sample_001_0000.nii.gz", images / "sample_001.nii.gz")
    (images / "._sample_001_0000.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    save_nifti(images / "sample_003_0001.nii.gz", np.zeros((16, 16, 7), np.int16))
    edit_json(nnunet_root / "dataset.json", numTraining=3)
    result = ingest("nnunet", str(nnunet_root))
    assert list(result.manifest["case_id"]) == ["sample_001", "sample_005", "sample_006"]
    assert result.problems == [
        f"{images / 'notes.txt'}: does not end with the file_ending '.nii.gz', left out",
        f"{images / 'sample_001.nii.gz'}: not named <case>_<4-digit channel>.nii.gz, left out",
        f"{images / 'sample_004_0000.nii.gz'}: image without a label in labelsTr/, left out",
        f"{labels / 'sample_002.nii.gz'}: label without images in imagesTr/, left out",
        f"{images / 'sample_003_0001.nii.gz'}: shape (16, 16, 7) differs from sample_003_0000.nii.gz (16, 16, 6), case sample_003 left out",
    ]


@pytest.mark.parametrize("edit, message", [
    (lambda root: (root / "imagesTr" / "sample_002_0001.nii.gz").unlink(),
     "{root}/imagesTr/sample_002_0001.nii.gz: missing; {root}/dataset.json names 2 channels (T1, T2)"),
    (lambda root: shutil.copy(root / "imagesTs" / "sample_005_0001.nii.gz", root / "imagesTs" / "sample_005_0002.nii.gz"),
     "{root}/imagesTs/sample_005_0002.nii.gz: channel 2, but {root}/dataset.json names 2 channels (T1, T2)"),
    (lambda root: edit_json(root / "dataset.json", numTraining=40), "{root}/dataset.json: numTraining is 40 but labelsTr/ holds 4 label files"),
    (lambda root: edit_json(root / "dataset.json", file_ending=".mha"), "{root}/dataset.json: file_ending '.mha' is not a format raysegment reads"),
    (lambda root: edit_json(root / "dataset.json", channel_names=None, modality={"0": "MRI"}),
     "{root}/dataset.json: has 'modality' and no 'channel_names': an MSD or nnU-Net v1 dataset (raysegment ingest msd)"),
    (lambda root: edit_json(root / "dataset.json", labels={"background": 0, "tumour": "one"}), "{root}/dataset.json: 'labels' must map names to a value"),
])
def test_a_description_that_contradicts_the_files_is_one_error(nnunet_root, edit, message):
    edit(nnunet_root)
    with pytest.raises(DatasetError) as error:
        ingest("nnunet", str(nnunet_root))
    assert str(error.value).startswith(message.format(root=nnunet_root))
