"""BraTS importer on a generated BraTS 2020 layout, with the seg-name quirk and validation cases."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest

from raysegment.ingest import ingest
from raysegment.ingest.brats import BRATS_REGIONS
from raysegment.manifest import slice_view
from raysegment.preprocess import PreprocessConfig, iter_examples
from raysegment.sample_data import make_sample_data


@pytest.fixture(scope="module")
def brats_root(tmp_path_factory):
    out = tmp_path_factory.mktemp("brats")
    make_sample_data(str(out), "brats", patients=5, size=24, depth=10, validation=2, quirks=True)
    # A case with a modality missing is reported and left out.
    broken = out / "MICCAI_BraTS2020_TrainingData" / "BraTS20_Training_099"
    broken.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), broken / "BraTS20_Training_099_flair.nii.gz")
    return str(out)


def test_cases_modalities_and_quirks(brats_root):
    result = ingest("brats", brats_root)
    df = result.manifest.set_index("case_id")
    assert len(df) == 5 + 2
    assert "BraTS20_Training_099" not in df.index
    assert any("BraTS20_Training_099: missing modalities ['t1', 't1ce', 't2']" in p for p in result.problems)
    quirky = df.loc["BraTS20_Training_005"]
    assert quirky["mask_uri"].endswith("W39_1998.09.19_Segm.nii")
    assert any("W39_1998.09.19_Segm.nii: seg file not named BraTS20_Training_005_seg.nii.gz" in p for p in result.problems)
    for case in ("BraTS20_Validation_001", "BraTS20_Validation_002"):
        assert pd_isna(df.loc[case, "mask_uri"]) and df.loc[case, "split"] == "unlabeled"
        assert df.loc[case, "num_slices"] == 10
    train = df.loc["BraTS20_Training_001"]
    assert list(train["channels"]) == ["flair", "t1", "t1ce", "t2"]
    assert [os.path.basename(u) for u in train["image_uris"]] == [f"BraTS20_Training_001_{m}.nii.gz" for m in ("flair", "t1", "t1ce", "t2")]
    assert train["level"] == "volume" and train["num_slices"] == 10
    seg = nib.load(train["mask_uri"]).get_fdata()
    assert list(train["foreground_slices"]) == [int(k) for k in np.flatnonzero(seg.any(axis=(0, 1)))]
    assert not any(u.endswith(".csv") for uris in df["image_uris"] for u in uris)


def pd_isna(value):
    import pandas as pd

    return pd.isna(value)


def test_labels_map_to_brats_regions(brats_root):
    df = ingest("brats", brats_root).manifest
    row = df[df["case_id"] == "BraTS20_Training_002"].iloc[0].to_dict()
    config = PreprocessConfig(labels=BRATS_REGIONS, steps=[], slice_selection="foreground")
    seg = nib.load(row["mask_uri"]).get_fdata().astype(int)
    for example in iter_examples(row, config):
        k = example["slice_index"]
        wt, tc, et = example["mask"]
        np.testing.assert_array_equal(wt, np.isin(seg[..., k], [1, 2, 4]))
        np.testing.assert_array_equal(tc, np.isin(seg[..., k], [1, 4]))
        np.testing.assert_array_equal(et, seg[..., k] == 4)
        assert example["image"].shape == (4, 24, 24)


def test_slice_view_of_volumes(brats_root):
    df = ingest("brats", brats_root).manifest
    slices = slice_view(df[df["split"] != "unlabeled"], "foreground")
    volumes = df[df["split"] != "unlabeled"]
    assert len(slices) == sum(len(f) for f in volumes["foreground_slices"])
    assert slices["has_foreground"].all()
    assert (slices.groupby("patient_id")["split"].nunique() == 1).all()
