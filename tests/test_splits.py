"""Patient-level, seeded, stratified splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raysegment.splits import SplitConfig, _allocate, assign_folds, assign_splits, fold_splits


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


def _patients_table(positive: int, negative: int) -> pd.DataFrame:
    rows = [{"patient_id": f"P{p:02d}", "mask_uri": f"m{p}-{s}", "has_foreground": p < positive and s == 1}
            for p in range(positive + negative) for s in range(3)]
    return pd.DataFrame(rows)


def test_folds_put_every_patient_in_one_fold_and_spread_positives():
    df = _patients_table(positive=10, negative=5)
    folds = assign_folds(df, folds=5, seed=3)
    assert folds.notna().all() and set(folds) == set(range(5))
    assert (df.assign(f=folds).groupby("patient_id")["f"].nunique() == 1).all()
    per_fold = df.assign(f=folds).groupby("f").agg(patients=("patient_id", "nunique"),
                                                    positive=("has_foreground", lambda s: s.sum()))
    assert (per_fold["patients"] == 3).all() and (per_fold["positive"] == 2).all()
    assert folds.equals(assign_folds(df, folds=5, seed=3))
    assert not folds.equals(assign_folds(df, folds=5, seed=4))


def test_fold_splits_hold_out_the_fold_and_draw_validation_from_the_rest():
    df = _patients_table(positive=12, negative=8)
    folds = assign_folds(df, folds=5)
    for fold in range(5):
        split = fold_splits(df, folds, fold, val=0.1)
        by_patient = df.assign(s=split).groupby("patient_id")["s"].agg(set)
        assert (by_patient.map(len) == 1).all()
        test = set(df.loc[folds == fold, "patient_id"])
        assert {p for p, s in by_patient.items() if s == {"test"}} == test
        assert sum(s == {"val"} for s in by_patient) == 2  # 10% of the 16 others, rounded


def test_too_few_patients_for_the_folds():
    with pytest.raises(ValueError, match="5 folds need at least 5"):
        assign_folds(_patients_table(positive=2, negative=1), folds=5)
