"""Confusion counts and scores: hand computations, numpy/torch agreement, empty-mask conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raysegment.metrics import SCORE_NAMES, confusion_counts, scores_from_counts


def test_counts_by_hand():
    pred = np.array([[[[1, 1, 0], [0, 1, 0]]]], dtype=bool)  # (N=1, K=1, 2, 3)
    target = np.array([[[[1, 0, 0], [1, 1, 0]]]], dtype=bool)
    tp, fp, fn, tn = confusion_counts(pred, target)
    assert (tp.item(), fp.item(), fn.item(), tn.item()) == (2, 1, 1, 2)
    assert tp.shape == (1, 1) and tp.dtype == np.int64


def test_scores_by_hand():
    scores = scores_from_counts(np.array(2), np.array(1), np.array(1), np.array(2))
    expected = {"dice": 4 / 6, "iou": 2 / 4, "precision": 2 / 3, "recall": 2 / 3, "specificity": 2 / 3, "accuracy": 4 / 6, "fnr": 1 / 3}
    assert set(scores) == set(SCORE_NAMES)
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value), name


@pytest.mark.parametrize("spatial", [(7, 9), (5, 6, 4)])
def test_numpy_and_torch_give_the_same_counts_and_scores(spatial):
    rng = np.random.default_rng(0)
    pred, target = rng.random((3, 2, *spatial)) > 0.5, rng.random((3, 2, *spatial)) > 0.4
    counts_np = confusion_counts(pred, target)
    counts_torch = confusion_counts(torch.from_numpy(pred), torch.from_numpy(target))
    for a, b in zip(counts_np, counts_torch):
        assert isinstance(b, torch.Tensor) and b.shape == (3, 2)
        np.testing.assert_array_equal(a, b.numpy())
    # independent count: per sample and class with plain Python loops
    tp = [[int(np.sum(pred[n, k] & target[n, k])) for k in range(2)] for n in range(3)]
    np.testing.assert_array_equal(counts_np[0], tp)
    assert (sum(counts_np) == np.prod(spatial)).all()
    scores_np, scores_torch = scores_from_counts(*counts_np), scores_from_counts(*counts_torch)
    for name in SCORE_NAMES:
        np.testing.assert_allclose(scores_np[name], scores_torch[name].numpy())


def test_summed_counts_score_the_whole_epoch():
    rng = np.random.default_rng(1)
    pred, target = rng.random((4, 1, 8, 8)) > 0.5, rng.random((4, 1, 8, 8)) > 0.5
    summed = [c.sum(axis=0) for c in confusion_counts(pred, target)]
    pooled = scores_from_counts(*summed)["dice"]
    flat_p, flat_t = pred.ravel(), target.ravel()
    assert pooled.item() == pytest.approx(2 * np.sum(flat_p & flat_t) / (flat_p.sum() + flat_t.sum()))


def test_accepts_non_bool_masks_as_nonzero():
    pred = torch.tensor([[[[0.0, 2.0], [1.0, 0.0]]]])
    target = torch.tensor([[[[0, 1], [0, 0]]]], dtype=torch.uint8)
    tp, fp, fn, tn = confusion_counts(pred, target)
    assert (tp.item(), fp.item(), fn.item(), tn.item()) == (1, 1, 0, 2)


def test_empty_conventions():
    # columns: both empty | prediction empty | reference empty | full reference, prediction misses
    tp, fp, fn, tn = (np.array(v) for v in ([0, 0, 0, 3], [0, 0, 5, 0], [0, 4, 0, 1], [10, 6, 5, 0]))
    s = scores_from_counts(tp, fp, fn, tn)
    np.testing.assert_array_equal(s["dice"], [1, 0, 0, 6 / 7])
    np.testing.assert_array_equal(s["iou"], [1, 0, 0, 3 / 4])
    np.testing.assert_array_equal(s["precision"], [1, 0, 0, 1])
    np.testing.assert_array_equal(s["recall"], [1, 0, 0, 3 / 4])
    np.testing.assert_array_equal(s["specificity"], [1, 1, 0.5, 0])
    np.testing.assert_array_equal(s["fnr"], 1 - s["recall"])
    assert all(np.isfinite(v).all() for v in s.values())
    # a full reference predicted perfectly: specificity's 0/0 is 1 because nothing is wrong
    assert scores_from_counts(np.array(9), np.array(0), np.array(0), np.array(0))["specificity"] == 1


def test_shape_mismatch():
    with pytest.raises(ValueError, match="share a shape"):
        confusion_counts(np.zeros((1, 1, 4, 4), bool), np.zeros((1, 1, 4, 5), bool))
