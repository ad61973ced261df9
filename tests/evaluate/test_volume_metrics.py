"""Slice datasets (LGG) are scored per slice and per patient volume, the slices stacked in 3D."""

from __future__ import annotations

import pandas as pd
import pytest

from raysegment.manifest import read_manifest

pytestmark = pytest.mark.slow


def test_patient_volumes_pool_their_slices(lgg_scores, lgg_eval):
    out, result = lgg_scores
    labeled = read_manifest(lgg_eval["manifest"])
    labeled = labeled[labeled["mask_uri"].notna()]
    assert sorted(result.volumes["case_id"]) == sorted(labeled["volume_id"].unique())
    assert set(result.cases["case_id"]) == set(labeled["case_id"])  # the per-slice rows are all still there
    for volume_id, volume in result.volumes.set_index("case_id").iterrows():
        slices = result.cases[result.cases["case_id"].isin(labeled.loc[labeled["volume_id"] == volume_id, "case_id"])]
        # Independent reference: Dice of the stacked volume = Dice of the slices' pooled counts.
        tp = (slices["dice"] * (slices["volume_pred"] + slices["volume_true"]) / 2).sum()
        size = slices["volume_pred"].sum() + slices["volume_true"].sum()
        assert volume["dice"] == pytest.approx(2 * tp / size if size else 1.0, abs=1e-6)
        assert volume["volume_true"] == pytest.approx(slices["volume_true"].sum() / 1000)  # mm^2 x 1 slice -> mL
        assert (volume["slices"], volume["dimensions"]) == (len(slices), 3)
    stored = pd.read_parquet(out / "volume_metrics.parquet")
    pd.testing.assert_frame_equal(stored, result.volumes, check_dtype=False)
    assert set(result.volume_summary["split"]) == {"train", "val", "test"}
