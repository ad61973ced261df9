"""Manifest schema, validation, S3 round trip and slice/volume views."""

from __future__ import annotations

import pandas as pd
import pytest

from raysegment import manifest as mf
from raysegment.errors import ManifestError


def _rows():
    return pd.DataFrame(
        [
            {"case_id": "vol1", "patient_id": "p1", "dataset": "brats", "level": "volume", "image_uris": ["a.nii.gz"],
             "channels": ["flair"], "mask_uri": "s.nii.gz", "num_slices": 6, "foreground_slices": [2, 3],
             "split": "train", "has_foreground": True, "format": "nifti"},
            {"case_id": "vol2", "patient_id": "p2", "dataset": "brats", "level": "volume", "image_uris": ["b.nii.gz"],
             "channels": ["flair"], "mask_uri": None, "num_slices": 4, "split": "unlabeled", "format": "nifti"},
            *[
                {"case_id": f"p3_{k}", "patient_id": "p3", "dataset": "lgg", "level": "slice", "image_uris": [f"{k}.tif"],
                 "channels": ["r", "g", "b"], "mask_uri": f"{k}_mask.tif", "slice_index": k, "volume_id": "p3",
                 "split": "val", "has_foreground": k in (1, 2), "format": "tiff"}
                for k in range(5)
            ],
        ]
    )


def test_round_trip_local_and_s3(tmp_path, s3_bucket):
    df = _rows()
    for uri in (str(tmp_path / "m.parquet"), f"{s3_bucket}/manifests/m.parquet"):
        table = mf.write_manifest(df, uri)
        assert table.schema.equals(mf.SCHEMA)
        back = mf.read_manifest(uri)
        assert list(back["case_id"]) == list(df["case_id"])
        assert back.loc[0, "foreground_slices"].tolist() == [2, 3]
        assert pd.isna(back.loc[1, "mask_uri"])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda df: df.assign(split=["train", "unlabeled", "val", "val", "train", "val", "val"]), "more than one split"),
        (lambda df: df.assign(case_id=["x"] * len(df)), "duplicate case_id"),
        (lambda df: df.assign(split="holdout"), "unknown split"),
        (lambda df: df.assign(level="stack"), "unknown level"),
        (lambda df: df.assign(mask_uri=None), "has no mask"),
    ],
)
def test_validation_errors_name_the_problem(tmp_path, change, message):
    with pytest.raises(ManifestError, match=message):
        mf.write_manifest(change(_rows()), str(tmp_path / "bad.parquet"))


def test_read_rejects_non_parquet(tmp_path):
    path = tmp_path / "m.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(ManifestError, match="m.parquet: not a Parquet file"):
        mf.read_manifest(str(path))


def test_slice_view_expands_volumes_and_selects():
    df = mf.to_table(_rows()).to_pandas()
    everything = mf.slice_view(df, "all")
    assert len(everything) == 6 + 4 + 5
    vol1 = everything[everything["volume_id"] == "vol1"]
    assert list(vol1["case_id"]) == [f"vol1:{k:03d}" for k in range(6)]
    assert list(vol1["has_foreground"]) == [False, False, True, True, False, False]
    assert set(everything["level"]) == {"slice"}
    fg = mf.slice_view(df, "foreground")
    assert set(fg["case_id"]) == {"vol1:002", "vol1:003", "p3_1", "p3_2"} | {f"vol2:{k:03d}" for k in range(4)}
    middle = mf.slice_view(df, "middle")
    assert set(middle["case_id"]) == {"vol1:003", "vol2:002", "p3_2"}
    balanced = mf.slice_view(df, "balanced", seed=0)
    per_volume = balanced.groupby("volume_id")["has_foreground"].agg(["sum", "count"])
    assert per_volume.loc["vol1", "sum"] == 2 and per_volume.loc["vol1", "count"] == 4
    assert per_volume.loc["p3", "sum"] == 2 and per_volume.loc["p3", "count"] == 4


def test_summary_counts():
    summary = mf.summary(mf.to_table(_rows()).to_pandas())
    assert summary["patients"] == 3 and summary["cases"] == 7
    assert summary["slices"] == 6 + 4 + 5
    assert summary["positives"] == 1 + 2
    assert summary["splits"]["val"] == {"patients": 1, "cases": 5, "positives": 2}
