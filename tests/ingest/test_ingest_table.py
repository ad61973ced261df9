"""Case-table importer (CSV / Parquet) over the generated MSD and nnU-Net files: columns, paths, ids, problems."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from self_described import save_nifti
from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.ingest import DatasetError, ingest, labels_of


def test_csv_of_4d_files_with_relative_paths_and_patients(msd_sample, tmp_path):
    table = msd_sample / "cases.csv"
    rows = [f"imagesTr/sample_00{i}.nii.gz,labelsTr/sample_00{i}.nii.gz,{'p1' if i < 3 else f'p{i}'}" for i in range(1, 5)]
    rows.append("imagesTs/sample_005.nii.gz,,")
    table.write_text("\n".join(["image,mask,patient_id", *rows]) + "\n")
    try:
        result = ingest("table", str(table), str(tmp_path / "t.parquet"))
    finally:
        table.unlink()
    df = result.manifest.set_index("case_id")
    assert list(df.index) == [f"sample_00{i}" for i in range(1, 6)] and result.problems == []
    assert df.loc["sample_001", "image_uris"][0] == str(msd_sample / "imagesTr" / "sample_001.nii.gz")
    assert list(df.loc["sample_001", "channels"]) == ["image_0", "image_1"]  # one 4D file of two channels
    assert df.loc["sample_001", "patient_id"] == df.loc["sample_002", "patient_id"] == "p1"
    assert df.loc["sample_001", "split"] == df.loc["sample_002", "split"]
    assert df.loc["sample_005", "patient_id"] == "sample_005" and df.loc["sample_005", "split"] == "unlabeled"
    assert set(df["dataset"]) == {"table"} and set(df["num_slices"]) == {6}
    assert result.labels == labels_of(str(tmp_path / "t.parquet")) == {"label_1": [1], "label_2": [2]}


def test_one_column_per_channel_names_the_channels(nnunet_sample, tmp_path):
    images = nnunet_sample / "imagesTr"
    df = pd.DataFrame({
        "image_t1": [str(images / f"sample_00{i}_0000.nii.gz") for i in (1, 2)],
        "image_t2": [str(images / f"sample_00{i}_0001.nii.gz") for i in (1, 2)],
        "mask": [str(nnunet_sample / "labelsTr" / f"sample_00{i}.nii.gz") for i in (1, 2)],
        "age": [61, 47],
    })
    df.to_csv(tmp_path / "cases.csv", index=False)
    result = ingest("table", str(tmp_path / "cases.csv"), split=_all_train())
    out = result.manifest.set_index("case_id")
    assert list(out.index) == ["sample_001", "sample_002"]  # the shared part of the channel files' names
    assert list(out.loc["sample_002", "channels"]) == ["t1", "t2"]
    assert list(out.loc["sample_002", "image_uris"]) == list(df.loc[1, ["image_t1", "image_t2"]])


def test_parquet_list_column_and_json_list_in_csv(nnunet_sample, tmp_path):
    files = [[str(nnunet_sample / "imagesTs" / f"sample_00{i}_000{k}.nii.gz") for k in (0, 1)] for i in (5, 6)]
    pq.write_table(pa.table({"case_id": ["a", "b"], "image": files}), tmp_path / "cases.parquet")
    from_parquet = ingest("table", str(tmp_path / "cases.parquet")).manifest
    pd.DataFrame({"case_id": ["a", "b"], "image": [json.dumps(f) for f in files]}).to_csv(tmp_path / "cases.csv", index=False)
    from_csv = ingest("table", str(tmp_path / "cases.csv")).manifest
    for df in (from_parquet, from_csv):
        assert list(df["case_id"]) == ["a", "b"] and set(df["split"]) == {"unlabeled"}
        assert [list(u) for u in df["image_uris"]] == files
        assert [list(c) for c in df["channels"]] == [["image_0", "image_1"]] * 2


def test_missing_and_mismatched_files_are_problems(msd_sample, tmp_path):
    save_nifti(tmp_path / "short.nii.gz", np.zeros((16, 16, 5), np.uint8))
    rows = [(msd_sample / "imagesTr" / "sample_001.nii.gz", msd_sample / "labelsTr" / "sample_001.nii.gz"),
            (msd_sample / "imagesTr" / "sample_002.nii.gz", tmp_path / "short.nii.gz"),
            (tmp_path / "gone.nii.gz", msd_sample / "labelsTr" / "sample_003.nii.gz")]
    pd.DataFrame(rows, columns=["image", "mask"]).astype(str).to_csv(tmp_path / "cases.csv", index=False)
    result = ingest("table", str(tmp_path / "cases.csv"), split=_all_train())
    assert list(result.manifest["case_id"]) == ["sample_001"]
    assert result.problems == [
        f"{tmp_path / 'short.nii.gz'}: shape (16, 16, 5) differs from sample_002.nii.gz (16, 16, 6), case sample_002 left out",
        f"{tmp_path / 'gone.nii.gz'}: no such file or object (case gone left out)",
    ]


@pytest.mark.parametrize("columns, rows, message", [
    (["path", "mask"], [["a.nii.gz", ""]], "{table}: no 'image' or 'image_<channel>' column (columns: path, mask)"),
    (["image", "image_t1"], [["a.nii.gz", "b.nii.gz"]], "{table}: both 'image' and 'image_<channel>' columns"),
    (["image"], [["x/scan.nii.gz"], ["y/scan.nii.gz"]], "{table}: case id 'scan' appears more than once (derived from the image file names; add a case_id column)"),
    (["image_t1", "image_t2"], [["a_t1.nii.gz", ""]], "{table}: row 1 has no 'image_t2' file"),
])
def test_a_bad_table_is_one_error(tmp_path, columns, rows, message):
    table = tmp_path / "cases.csv"
    pd.DataFrame(rows, columns=columns).to_csv(table, index=False)
    with pytest.raises(DatasetError) as error:
        ingest("table", str(table))
    assert str(error.value).startswith(message.format(table=table))


def test_cases_with_other_channel_counts_are_one_error(msd_sample, nnunet_sample, tmp_path):
    table = tmp_path / "cases.csv"
    single = nnunet_sample / "imagesTr" / "sample_002_0000.nii.gz"
    pd.DataFrame({"image": [str(msd_sample / "imagesTr" / "sample_001.nii.gz"), str(single)]}).to_csv(table, index=False)
    with pytest.raises(DatasetError) as error:
        ingest("table", str(table))
    assert str(error.value) == f"{single}: 1 channels, but case sample_001 of {table} has 2 (image_0, image_1)"


def test_cli_table_of_another_format(tmp_path):
    (tmp_path / "cases.tsv").write_text("image\n")
    result = CliRunner().invoke(app, ["ingest", "table", str(tmp_path / "cases.tsv"), "--out", str(tmp_path / "m.parquet")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path / 'cases.tsv'}: a case table must be .csv or .parquet"


def _all_train():
    from raysegment.splits import SplitConfig

    return SplitConfig(train=1.0, val=0.0, test=0.0)
