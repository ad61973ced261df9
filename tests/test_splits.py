"""Patient-level, seeded, stratified splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raysegment.splits import SplitConfig, _allocate, assign_splits


def _cases(patients: int, slices: int, positive_every: int = 3, seed: int = 0) -> pd.DataFrame:
    rows = []
    for p in range(patients):
        for s in range(slices):
            rows.append({"case_id": f"P{p}_{s}", "patient_id": f"P{p}", "mask_uri": "m",
                         "has_foreground": p % positive_every == 0 and s % 2 == 0})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("patients, positive_every", [(3, 1), (7, 3), (20, 3), (101, 7)])
def test_no_patient_in_two_splits_and_every_split_has_positives(patients, positive_every):
    df = _cases(patients, 5, positive_every)
    split = assign_splits(df, SplitConfig(seed=3))
    assert (df.assign(split=split).groupby("patient_id")["split"].nunique() == 1).all()
    positives = df.assign(split=split).groupby("split")["has_foreground"].any()
    assert set(split) == {"train", "val", "test"}
    assert positives.all()


def test_ratios_are_respected_per_patient():
    df = _cases(100, 2)
    split = assign_splits(df, SplitConfig(0.8, 0.1, 0.1, seed=1))
    per_patient = df.assign(split=split).groupby("patient_id")["split"].first().value_counts()
    assert per_patient.to_dict() == {"train": 80, "val": 10, "test": 10}


def test_seeded_and_changes_with_seed():
    df = _cases(40, 3)
    a = assign_splits(df, SplitConfig(seed=7))
    assert a.equals(assign_splits(df, SplitConfig(seed=7)))
    assert not a.equals(assign_splits(df, SplitConfig(seed=8)))


def test_unlabeled_and_fixed_splits():
    df = _cases(10, 2)
    df.loc[df["patient_id"] == "P9", "mask_uri"] = None
    fixed = pd.Series(np.where(df["patient_id"] == "P0", "test", None), index=df.index)
    split = assign_splits(df, SplitConfig(seed=0), fixed=fixed)
    assert set(split[df["patient_id"] == "P9"]) == {"unlabeled"}
    assert set(split[df["patient_id"] == "P0"]) == {"test"}
    assert set(split[~df["patient_id"].isin(["P0", "P9"])]) == {"train", "val"}  # the layout decided test


def test_allocate_gives_minimums_first_and_sums_to_n():
    ratios = {"train": 0.8, "val": 0.1, "test": 0.1}
    assert _allocate(3, ratios, {"train": 1, "val": 1, "test": 1}) == {"train": 1, "val": 1, "test": 1}
    assert _allocate(2, ratios, {"train": 1, "val": 1, "test": 1})["train"] == 1
    for n in range(0, 30):
        assert sum(_allocate(n, ratios, {}).values()) == n


def test_invalid_ratios():
    with pytest.raises(ValueError):
        _ = SplitConfig(train=-1).ratios


def test_a_lone_positive_patient_goes_to_training():
    split = assign_splits(_cases(3, 2, positive_every=3), SplitConfig(seed=0))
    assert set(split[:2]) == {"train"}  # P0 is the positive one
