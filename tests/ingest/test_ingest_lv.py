"""Left-ventricle importer: DICOM + PNG pairs, test/GT layout, pseudonymous patient keys."""

from __future__ import annotations

import os

import pytest

from raysegment.ingest import ingest
from raysegment.sample_data import make_sample_data


@pytest.fixture(scope="module")
def lv_root(tmp_path_factory):
    out = tmp_path_factory.mktemp("lv")
    make_sample_data(str(out), "lv", patients=6, slices=3, size=32, test_patients=2)
    os.remove(out / "training" / "SCD00001_IM-0001-0002.png")  # image without mask
    os.remove(out / "test" / "SCD00008_IM-0001-0003.dcm")  # mask without image
    return str(out)


def test_pairs_splits_and_problems(lv_root):
    result = ingest("lv", lv_root)
    df = result.manifest
    assert len(df) == 8 * 3 - 2
    test = df[df["split"] == "test"]
    assert len(test) == 2 * 3 - 1
    assert all("/test/GT/" in m for m in test["mask_uri"])
    assert all("/training/" in u[0] for u in df[df["split"] != "test"]["image_uris"])
    assert set(df[df["split"] != "test"]["split"]) <= {"train", "val"}
    problems = "\n".join(result.problems)
    assert "SCD00001_IM-0001-0002.dcm: DICOM image without a mask" in problems
    assert "SCD00008_IM-0001-0003.png: mask without a DICOM image" in problems
    for _, row in df.iterrows():
        assert os.path.splitext(os.path.basename(row["image_uris"][0]))[0] == os.path.splitext(os.path.basename(row["mask_uri"]))[0]
    assert (df.groupby("patient_id")["split"].nunique() == 1).all()


def test_patient_keys_carry_no_header_identifiers(lv_root):
    df = ingest("lv", lv_root).manifest
    assert df["patient_id"].nunique() == 8
    text = df.astype(str).to_csv()
    for identifier in ("Synthetic^", "19600101", "SCD00001\n"):
        assert identifier not in text
    assert all(p.startswith("lv-") for p in df["patient_id"])
