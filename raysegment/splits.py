"""Seeded, stratified, patient-level train/val/test splits.

Splitting by slice (as the seed reports did) leaks a patient's neighbouring slices into the test
set; here every patient lands in exactly one split, and positive patients (any foreground) are
spread over the splits first so each split can be scored on real lesions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SplitConfig:
    """Split ratios (normalised to sum 1) and the seed that makes the split reproducible."""

    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    seed: int = 0

    @property
    def ratios(self) -> dict[str, float]:
        total = self.train + self.val + self.test
        if total <= 0 or min(self.train, self.val, self.test) < 0:
            raise ValueError(f"split ratios must be >= 0 and not all 0, got {self}")
        return {"train": self.train / total, "val": self.val / total, "test": self.test / total}


def _allocate(n: int, ratios: dict[str, float], minimum: dict[str, int]) -> dict[str, int]:
    """Largest-remainder allocation of ``n`` items, giving each split its minimum first."""
    counts = {k: min(minimum.get(k, 0), n) for k in ratios}
    while sum(counts.values()) > n:  # more minimums than items: drop from the smallest ratios
        k = min((k for k in counts if counts[k]), key=lambda k: ratios[k])
        counts[k] -= 1
    rest = n - sum(counts.values())
    exact = {k: max(ratios[k] * n - counts[k], 0.0) for k in ratios}
    scale = rest / sum(exact.values()) if sum(exact.values()) else 0.0
    share = {k: exact[k] * scale for k in ratios}
    for k in ratios:
        counts[k] += int(np.floor(share[k]))
    remainder = sorted(ratios, key=lambda k: share[k] - np.floor(share[k]), reverse=True)
    for k in remainder[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def assign_splits(df: pd.DataFrame, config: SplitConfig = SplitConfig(), fixed: pd.Series | None = None) -> pd.Series:
    """Split label per row, assigned per patient.

    Args:
        df: manifest rows with ``patient_id``, ``mask_uri`` and ``has_foreground``.
        config: ratios and seed.
        fixed: optional per-row split already decided by the dataset layout (e.g. LV ``test/``);
            non-null values are kept, their patients take no part in the random split, and the
            splits the layout decides are not also drawn at random (LV: train/val only).
    Returns:
        a Series aligned with ``df``: ``train``/``val``/``test``, or ``unlabeled`` without a mask.
    """
    ratios = config.ratios
    rng = np.random.default_rng(config.seed)
    split = pd.Series("unlabeled", index=df.index, dtype=object)
    labeled = df["mask_uri"].notna()
    if fixed is not None:
        split[fixed.notna()] = fixed[fixed.notna()]
        labeled &= fixed.isna()
        decided = set(fixed.dropna())
        kept = {k: (0.0 if k in decided else r) for k, r in ratios.items()}
        ratios = {k: r / sum(kept.values()) for k, r in kept.items()} if sum(kept.values()) else ratios
    patients = df[labeled].groupby("patient_id")["has_foreground"].apply(lambda s: bool(s.fillna(False).any()))
    positive = sorted(patients[patients].index)
    negative = sorted(patients[~patients].index)
    wanted = {k: 1 for k, r in ratios.items() if r > 0}
    # Patients per split first (each wanted split gets one if there are enough), then positives
    # spread over those places with one per split where possible, negatives filling the rest.
    target = _allocate(len(positive) + len(negative), ratios, wanted)
    pos_counts = _allocate(len(positive), ratios, {k: 1 for k in target if target[k]})
    for k in pos_counts:
        pos_counts[k] = min(pos_counts[k], target[k])
    for k in sorted(target, key=lambda k: -ratios[k]):
        spare = min(target[k] - pos_counts[k], len(positive) - sum(pos_counts.values()))
        pos_counts[k] += max(spare, 0)
    neg_counts = {k: target[k] - pos_counts[k] for k in target}
    assignment: dict[str, str] = {}
    for group, counts in ((positive, pos_counts), (negative, neg_counts)):
        order = list(rng.permutation(group)) if group else []
        start = 0
        for name in ("train", "val", "test"):
            for patient in order[start : start + counts[name]]:
                assignment[patient] = name
            start += counts[name]
    split[labeled] = df.loc[labeled, "patient_id"].map(assignment)
    return split


def assign_folds(df: pd.DataFrame, folds: int = 5, seed: int = 0) -> pd.Series:
    """Cross-validation fold per row (0 .. folds-1), assigned per patient; NaN for rows without a mask.

    Patients with foreground and those without are shuffled with ``seed`` and dealt round-robin
    separately, so every fold holds its share of both (Buda et al.'s 5-fold protocol over patients).
    """
    labeled = df["mask_uri"].notna()
    patients = df[labeled].groupby("patient_id")["has_foreground"].apply(lambda s: bool(s.fillna(False).any()))
    if len(patients) < folds:
        raise ValueError(f"{folds} folds need at least {folds} labeled patients, got {len(patients)}")
    rng = np.random.default_rng(seed)
    assignment: dict[str, int] = {}
    offset = 0
    for group in (sorted(patients[patients].index), sorted(patients[~patients].index)):
        for i, patient in enumerate(rng.permutation(group) if group else []):
            assignment[patient] = (offset + i) % folds
        offset += len(group)
    return df["patient_id"].map(assignment).where(labeled)


def fold_splits(df: pd.DataFrame, fold_of: pd.Series, fold: int, val: float = 0.1, seed: int = 0) -> pd.Series:
    """``train``/``val``/``test`` per row for cross-validation fold ``fold``.

    The fold's patients are the test split; ``val`` of the other patients (at least one) are drawn
    with ``seed`` for model selection, so no test patient ever chooses the model.
    """
    split = pd.Series("unlabeled", index=df.index, dtype=object)
    split[fold_of == fold] = "test"
    rest = sorted(df.loc[fold_of.notna() & (fold_of != fold), "patient_id"].unique())
    chosen = set(np.random.default_rng([seed, fold]).permutation(rest)[: max(1, round(val * len(rest)))])
    split[fold_of.notna() & (fold_of != fold)] = df["patient_id"].map(lambda p: "val" if p in chosen else "train")
    return split
