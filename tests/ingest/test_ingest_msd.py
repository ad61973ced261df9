"""MSD importer: the generated sample, every quirk and error on an edited copy, a few real hippocampus cases."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from self_described import REAL_DATA, edit_json, foreground_slices, label_values, save_nifti
from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.ingest import IMPORTERS, DatasetError, ingest, labels_of
from raysegment.manifest import read_manifest
from raysegment.preprocess import PreprocessConfig, iter_examples

HIPPOCAMPUS = REAL_DATA / "hippocampus"


def test_sample_cases_channels_labels_and_splits(msd_sample, tmp_path):
    out = tmp_path / "m.parquet"
    result = ingest("msd", str(msd_sample), str(out))
    df = result.manifest.set_index("case_id")
    assert list(df.index) == [f"sample_{i:03d}" for i in range(1, 7)]
    assert result.problems == []
    labeled, unlabeled = df.loc[[f"sample_{i:03d}" for i in range(1, 5)]], df.loc[["sample_005", "sample_006"]]
    assert set(labeled["split"]) <= {"train", "val", "test"} and set(unlabeled["split"]) == {"unlabeled"}
    assert unlabeled["mask_uri"].isna().all() and (unlabeled["num_slices"] == 6).all()
    assert unlabeled.loc["sample_005", "image_uris"][0] == str(msd_sample / "imagesTs" / "sample_005.nii.gz")
    row = df.loc["sample_002"]
    assert list(row["channels"]) == ["T1", "T2"]
    assert list(row["image_uris"]) == [str(msd_sample / "imagesTr" / "sample_002.nii.gz")]  # one 4D file holds both
    assert row["mask_uri"] == str(msd_sample / "labelsTr" / "sample_002.nii.gz")
    assert (row["level"], row["num_slices"], row["format"], row["dataset"]) == ("volume", 6, "nifti", "msd")
    assert list(row["foreground_slices"]) == foreground_slices(row["mask_uri"])
    assert result.labels == {"anterior": [1], "posterior": [2]} == labels_of(str(out))
    assert result.summary["cases"] == 6 and result.summary["splits"]["unlabeled"]["cases"] == 2


def test_rows_preprocess_into_two_channels_and_exclusive_classes(msd_sample):
    result = ingest("msd", str(msd_sample))
    row = result.manifest[result.manifest["case_id"] == "sample_001"].iloc[0].to_dict()
    config = PreprocessConfig(labels=result.labels, steps=[], slice_selection="foreground")
    examples = list(iter_examples(row, config))
    labels = np.asarray(nib.load(row["mask_uri"]).dataobj)
    assert [e["slice_index"] for e in examples] == list(row["foreground_slices"])
    for example in examples:
        k = example["slice_index"]
        assert example["image"].shape == (2, 16, 16)
        np.testing.assert_array_equal(example["mask"][0], labels[..., k] == 1)
        np.testing.assert_array_equal(example["mask"][1], labels[..., k] == 2)
        assert not (example["mask"][0] * example["mask"][1]).any()


def test_quirks_are_reported_and_bad_cases_left_out(msd_root):
    (msd_root / "imagesTr" / "._sample_001.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (msd_root / "labelsTr" / "._sample_001.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    shutil.copy(msd_root / "imagesTr" / "sample_004.nii.gz", msd_root / "imagesTr" / "sample_099.nii.gz")
    save_nifti(msd_root / "labelsTr" / "sample_002.nii.gz", np.zeros((16, 16, 5), np.uint8))  # one slice short
    shifted = np.diag([1.0, 1.0, 2.0, 1.0])
    shifted[:3, 3] = [0.0, 4.0, 0.0]
    save_nifti(msd_root / "labelsTr" / "sample_003.nii.gz", np.asarray(nib.load(msd_root / "labelsTr" / "sample_003.nii.gz").dataobj), shifted)
    edit_json(msd_root / "dataset.json", numTraining=5)
    result = ingest("msd", str(msd_root))
    assert list(result.manifest["case_id"]) == ["sample_001", "sample_004", "sample_005", "sample_006"]
    json_uri = str(msd_root / "dataset.json")
    assert result.problems == [
        f"{json_uri}: numTraining is 5 but it lists 4 cases; the list is used",
        f"{msd_root}: 2 hidden files (._* macOS metadata beside the scans) ignored",
        f"{msd_root / 'imagesTr' / 'sample_099.nii.gz'}: not listed in dataset.json, left out",
        f"{msd_root / 'labelsTr' / 'sample_002.nii.gz'}: shape (16, 16, 5) differs from sample_002.nii.gz (16, 16, 6), case sample_002 left out",
        f"{msd_root / 'labelsTr' / 'sample_003.nii.gz'}: affine differs from sample_003.nii.gz's by up to 4 mm, case sample_003 left out",
    ]


def test_labels_that_never_occur_and_values_nobody_named(msd_root):
    edit_json(msd_root / "dataset.json", labels={"0": "background", "1": "anterior", "2": "posterior", "3": "cyst"})
    odd = msd_root / "labelsTr" / "sample_001.nii.gz"
    labels = np.asarray(nib.load(odd).dataobj).copy()
    labels[0, 0, 0] = 7
    save_nifti(odd, labels)
    result = ingest("msd", str(msd_root))
    assert len(result.manifest) == 6
    assert result.problems == [
        f"{msd_root / 'dataset.json'}: label 'cyst' (values [3]) occurs in none of the 4 label files, left out of the training labels",
        f"{odd}: values [7] are not labels of dataset.json, read as background",
    ]
    assert result.labels == {"anterior": [1], "posterior": [2]}


@pytest.mark.parametrize("edit, message", [
    (lambda root: (root / "dataset.json").unlink(), "{root}/dataset.json: missing (the dataset folder must hold it)"),
    (lambda root: (root / "dataset.json").write_text("{'training': ["), "{root}/dataset.json: not valid JSON"),
    (lambda root: (root / "labelsTr" / "sample_003.nii.gz").unlink(), "{root}/dataset.json: lists {root}/labelsTr/sample_003.nii.gz, which does not exist"),
    (lambda root: [(root / "imagesTr" / f"sample_00{i}.nii.gz").unlink() for i in (1, 2)],
     "{root}/dataset.json: lists {root}/imagesTr/sample_001.nii.gz, which does not exist (1 more listed files are missing)"),
    (lambda root: edit_json(root / "dataset.json", modality={"0": "T1", "1": "T2", "2": "FLAIR"}),
     "{root}/imagesTr/sample_001.nii.gz: 2 channels, but {root}/dataset.json has 3 (T1, T2, FLAIR)"),
    (lambda root: edit_json(root / "dataset.json", labels=None), "{root}/dataset.json: 'labels' must map numbers to names"),
])
def test_a_description_that_contradicts_the_files_is_one_error(msd_root, edit, message):
    edit(msd_root)
    with pytest.raises(DatasetError) as error:
        ingest("msd", str(msd_root))
    assert str(error.value).startswith(message.format(root=msd_root))
    assert "\n" not in str(error.value)


def test_cli_ingest_msd_prints_summary_and_labels(msd_sample, tmp_path):
    out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(app, ["ingest", "msd", str(msd_sample), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "patients 6, cases 6, slices 36" in result.output and "problems 0" in result.output
    assert """--set 'data.preprocess.labels={"anterior": [1], "posterior": [2]}'""" in result.output
    assert 'channels: ["T1", "T2"]' in result.output
    assert len(read_manifest(str(out))) == 6 and labels_of(str(out)) == {"anterior": [1], "posterior": [2]}


def test_cli_bad_dataset_is_one_line_and_exit_code_2(tmp_path):
    result = CliRunner().invoke(app, ["ingest", "msd", str(tmp_path), "--out", str(tmp_path / "m.parquet")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path}/dataset.json: missing (the dataset folder must hold it)"


def test_cli_lists_every_importer():
    result = CliRunner().invoke(app, ["ingest", "--help"])
    listed = {line.split()[1] for line in result.output.splitlines() if line.startswith("│ ") and len(line.split()) > 2}
    assert set(IMPORTERS.names()) <= listed


def test_ingest_from_s3(msd_sample, s3_bucket):
    from raysegment import storage

    for path in sorted(msd_sample.rglob("*")):
        if path.is_file():
            storage.write_bytes(f"{s3_bucket}/msd/{path.relative_to(msd_sample)}", path.read_bytes())
    result = ingest("msd", f"{s3_bucket}/msd", f"{s3_bucket}/msd.parquet")
    assert len(result.manifest) == 6 and result.problems == []
    assert result.manifest["image_uris"].iloc[0][0] == f"{s3_bucket}/msd/imagesTr/sample_001.nii.gz"
    assert set(result.manifest["num_slices"]) == {6}
    assert labels_of(f"{s3_bucket}/msd.parquet") == {"anterior": [1], "posterior": [2]}


@pytest.fixture
def hippocampus(tmp_path):
    """Four real cases and their dataset.json, edited to list only them."""
    if not (HIPPOCAMPUS / "dataset.json").is_file():
        pytest.skip(f"real MSD hippocampus cases not found at {HIPPOCAMPUS} (a development checkout has them in ../shared/data)")
    described = json.loads((HIPPOCAMPUS / "dataset.json").read_text())
    chosen = described["training"][:4]
    root = tmp_path / "Task04_Hippocampus"
    for entry in chosen:
        for key in ("image", "label"):
            target = root / entry[key]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(HIPPOCAMPUS / entry[key], target)
    (root / "dataset.json").write_text(json.dumps({**described, "training": chosen, "numTraining": len(chosen)}))
    return root, described


def test_real_hippocampus_cases(hippocampus, tmp_path):
    root, described = hippocampus
    # The real folder agrees with its description: every listed pair is there, and nothing else.
    assert described["numTraining"] == len(described["training"]) == len(list((HIPPOCAMPUS / "imagesTr").glob("*.nii.gz")))
    assert len(list((HIPPOCAMPUS / "labelsTr").glob("*.nii.gz"))) == described["numTraining"]
    result = ingest("msd", str(root), str(tmp_path / "h.parquet"))
    df = result.manifest.set_index("case_id")
    images = sorted((root / "imagesTr").glob("*.nii.gz"))
    assert list(df.index) == [p.name.removesuffix(".nii.gz") for p in images] and len(images) == 4
    assert result.problems == [] and set(df["split"]) <= {"train", "val", "test"}
    assert result.labels == {name: [int(v)] for v, name in described["labels"].items() if int(v)} == {"Anterior": [1], "Posterior": [2]}
    assert labels_of(str(tmp_path / "h.parquet")) == result.labels
    for path in images:
        row = df.loc[path.name.removesuffix(".nii.gz")]
        image = nib.load(path)
        assert list(row["channels"]) == [described["modality"]["0"]] == ["MRI"]
        assert row["num_slices"] == image.shape[-1] and row["level"] == "volume"
        assert list(row["foreground_slices"]) == foreground_slices(row["mask_uri"])
        assert label_values(row["mask_uri"]) == {0, 1, 2}
        assert row["has_foreground"]
