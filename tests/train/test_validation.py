"""Validation scores each patient volume: slices stacked in order, post-processed in 3D, Dice per volume."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from scipy import ndimage

from raysegment.losses import DeepSupervisionLoss, create_loss
from raysegment.postprocess import PostprocessConfig
from raysegment.train.loop import EpochStats, PatientStats, validate


class ListShard:
    """Stands in for a Ray Train dataset shard: the same ``iter_torch_batches`` over in-memory rows."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def iter_torch_batches(self, batch_size, dtypes, device, drop_last=False, **_):
        for start in range(0, len(self.rows), batch_size):
            chunk = self.rows[start:start + batch_size]
            yield {key: torch.as_tensor(np.stack([r[key] for r in chunk]), dtype=dtypes) for key in chunk[0]}


class Oracle(torch.nn.Module):
    """A "model" whose logits are stored in its input's first channel, so the test sets every prediction."""

    def forward(self, x):
        return x[:, :1] * 20 - 10  # 1 -> foreground, 0 -> background


def _volumes(seed: int = 0):
    """Three patients of 5 slices (shuffled): a lesion over slices 1-3, a false-positive island, one empty patient."""
    rng = np.random.default_rng(seed)
    rows = []
    for v in range(3):
        for k in range(5):
            truth = np.zeros((1, 16, 16), np.float32)
            pred = np.zeros((1, 16, 16), np.float32)
            if v < 2 and 1 <= k <= 3:
                truth[0, 4:10, 4:10] = 1
                pred[0, 5:10, 4:10] = 1
            if v == 1 and k == 0:
                pred[0, 13:15, 13:15] = 1  # not connected to the lesion in 3D
            rows.append({"image": pred, "mask": truth, "volume": v, "slice": k})
    return [rows[i] for i in rng.permutation(len(rows))]


def _reference(rows, largest_component: bool) -> list[float]:
    """Dice per volume with numpy and scipy, by hand."""
    out = []
    for v in sorted({r["volume"] for r in rows}):
        mine = sorted((r for r in rows if r["volume"] == v), key=lambda r: r["slice"])
        pred = np.stack([r["image"][0] for r in mine], axis=-1) > 0.5
        truth = np.stack([r["mask"][0] for r in mine], axis=-1) > 0.5
        if largest_component and pred.any():
            labels, _ = ndimage.label(pred)
            pred = labels == np.bincount(labels.ravel())[1:].argmax() + 1
        size = pred.sum() + truth.sum()
        out.append(1.0 if size == 0 else 2 * (pred & truth).sum() / size)
    return out


@pytest.mark.parametrize("largest_component", [True, False])
def test_patient_dice_is_the_mean_dice_of_stacked_post_processed_volumes(largest_component):
    rows = _volumes()
    post = PostprocessConfig(largest_component=largest_component)
    metrics = validate(Oracle(), lambda logits, masks: torch.tensor(0.0), ListShard(rows), 4, torch.device("cpu"), False,
                       contextlib.nullcontext, 0, 1, 3, post, ["tumor"])
    expected = _reference(rows, largest_component)
    assert metrics["val_patient_dice"] == pytest.approx(np.mean(expected))
    assert metrics["val_empty_slices"] == pytest.approx(9 / 15)
    # The island costs patient 1 Dice unless the 3D largest component removes it.
    assert bool(expected[1] == expected[0]) is largest_component


def test_workers_split_patients_and_their_counts_add_up():
    rows = _volumes()
    post = PostprocessConfig(largest_component=True)
    whole, parts = PatientStats(post), [PatientStats(post), PatientStats(post)]
    for r in rows:
        args = (torch.tensor([r["volume"]]), torch.tensor([r["slice"]]), torch.from_numpy(r["image"][None] > 0.5),
                torch.from_numpy(r["mask"][None] > 0.5))
        whole.add(*args)
        parts[r["volume"] % 2].add(*args)
    total, empty = whole.counts(3, 1, "cpu")
    split = [p.counts(3, 1, "cpu") for p in parts]
    torch.testing.assert_close(split[0][0] + split[1][0], total)
    torch.testing.assert_close(split[0][1] + split[1][1], empty)
    assert set(parts[0].slices) == {0, 2} and set(parts[1].slices) == {1}


class Shifted(torch.nn.Module):
    """Logits of the input's first channel moved one pixel right: its mirror images disagree."""

    def forward(self, x):
        return torch.roll(x[:, :1], shifts=1, dims=-1) * 20 - 10


def test_mirror_validation_judges_the_averaged_prediction():
    rows = _volumes()
    post = PostprocessConfig(mirror=True)
    metrics = validate(Shifted(), lambda logits, masks: torch.tensor(0.0), ListShard(rows), 4, torch.device("cpu"), False,
                       contextlib.nullcontext, 0, 1, 3, post, ["tumor"])
    # By hand: each slice's four views (none, width, height, both flipped), sigmoids averaged, > 0.5.
    averaged = []
    for row in rows:
        x = torch.from_numpy(row["image"][None])
        views = [torch.sigmoid(Shifted()(x.flip(a)).flip(a)) if a else torch.sigmoid(Shifted()(x)) for a in ((), (-1,), (-2,), (-2, -1))]
        averaged.append({**row, "image": (torch.stack(views).mean(0)[0] > 0.5).float().numpy()})
    assert metrics["val_patient_dice"] == pytest.approx(np.mean(_reference(averaged, largest_component=False)))
    plain = validate(Shifted(), lambda logits, masks: torch.tensor(0.0), ListShard(rows), 4, torch.device("cpu"), False,
                     contextlib.nullcontext, 0, 1, 3, PostprocessConfig(), ["tumor"])
    assert plain["val_patient_dice"] != metrics["val_patient_dice"]


def test_validation_reports_every_score_and_each_term_of_a_combined_loss():
    rows = _volumes()
    loss = DeepSupervisionLoss(create_loss({"bce": 0.5, "dice": 0.5}))
    metrics = validate(Oracle(), loss, ListShard(rows), 4, torch.device("cpu"), False, contextlib.nullcontext, 0, 1, 3,
                       PostprocessConfig(largest_component=False), ["tumor"])
    pred = np.stack([r["image"] for r in rows]) > 0.5
    truth = np.stack([r["mask"] for r in rows]) > 0.5
    tp, fp, fn, tn = (pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum(), (~pred & ~truth).sum()
    assert metrics["val_accuracy"] == pytest.approx((tp + tn) / pred.size)
    assert metrics["val_precision"] == pytest.approx(tp / (tp + fp))
    assert metrics["val_recall"] == pytest.approx(tp / (tp + fn))
    assert metrics["val_specificity"] == pytest.approx(tn / (tn + fp))
    # BCE is a mean over pixels and every slice has as many: the example-weighted mean is the mean over all pixels.
    logits = torch.from_numpy(np.stack([r["image"] for r in rows])) * 20 - 10
    expected_bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(truth.astype(np.float32)))
    assert metrics["val_loss_bce"] == pytest.approx(float(expected_bce))
    assert metrics["val_loss"] == pytest.approx(0.5 * metrics["val_loss_bce"] + 0.5 * metrics["val_loss_dice"])


def test_epoch_stats_weigh_each_batch_by_its_examples():
    torch.manual_seed(0)
    loss_fn = DeepSupervisionLoss(create_loss({"bce": 0.3, "jaccard": 0.7}))
    stats = EpochStats(1, torch.device("cpu"), terms=["bce", "jaccard"])
    batches = [(torch.randn(n, 1, 8, 8), (torch.rand(n, 1, 8, 8) > 0.5).float()) for n in (3, 1)]
    for logits, masks in batches:
        stats.add(*loss_fn.forward_with_terms(logits, masks), logits, masks)
    out, _ = stats.summary("train")
    logits, masks = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    assert out["train_loss_bce"] == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(logits, masks)))
    jaccard = [float(create_loss("jaccard")(lo, m)) for lo, m in batches]
    assert out["train_loss_jaccard"] == pytest.approx((3 * jaccard[0] + jaccard[1]) / 4)
    assert out["train_loss"] == pytest.approx(0.3 * out["train_loss_bce"] + 0.7 * out["train_loss_jaccard"])
    pred, truth = logits > 0, masks > 0.5
    assert out["train_accuracy"] == pytest.approx(float((pred == truth).float().mean()))
    assert out["train_precision"] == pytest.approx(float((pred & truth).sum() / pred.sum()))
