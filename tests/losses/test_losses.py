"""Losses by name and in combination, checked against hand computations and torch/torchvision."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from raysegment.errors import ConfigError
from raysegment.losses import DeepSupervisionLoss, WeightedSum, create_loss, list_losses, loss_with_terms, term_names
from raysegment.models import create_model


@pytest.fixture
def batch():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 1, 8, 8) > 0.6).float()
    return logits, target


def soft_counts(logits, target, dims):
    p = torch.sigmoid(logits)
    return (p * target).sum(dims), (p * (1 - target)).sum(dims), ((1 - p) * target).sum(dims)


def test_registered_names():
    assert list_losses() == ["bce", "bce_dice", "dice", "focal", "jaccard", "tversky"]


def test_dice_against_hand_computation(batch):
    logits, target = batch
    tp, fp, fn = soft_counts(logits, target, dims=(0, 1, 2, 3))  # binary mode pools the batch
    expected = 1 - 2 * tp / (2 * tp + fp + fn)
    torch.testing.assert_close(create_loss("dice")(logits, target), expected)


def test_dice_of_a_perfect_prediction_is_zero(batch):
    _, target = batch
    assert create_loss("dice")(40 * (2 * target - 1), target) < 1e-6


def test_jaccard_against_hand_computation(batch):
    logits, target = batch
    tp, fp, fn = soft_counts(logits, target, dims=(0, 1, 2, 3))
    torch.testing.assert_close(create_loss("jaccard")(logits, target), 1 - tp / (tp + fp + fn))


def test_tversky_weights_false_positives_and_negatives(batch):
    logits, target = batch
    tp, fp, fn = soft_counts(logits, target, dims=(0, 1, 2, 3))
    loss = create_loss("tversky", alpha=0.3, beta=0.7)(logits, target)
    torch.testing.assert_close(loss, 1 - tp / (tp + 0.3 * fp + 0.7 * fn))
    torch.testing.assert_close(create_loss("tversky")(logits, target), create_loss("dice")(logits, target))


def test_bce_equals_torch(batch):
    logits, target = batch
    torch.testing.assert_close(create_loss("bce")(logits, target), F.binary_cross_entropy_with_logits(logits, target))
    weighted = create_loss("bce", pos_weight=3.0)(logits, target)
    torch.testing.assert_close(weighted, F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(3.0)))


def test_focal_equals_torchvision(batch):
    logits, target = batch
    expected = sigmoid_focal_loss(logits, target, alpha=-1, gamma=2.0, reduction="mean")  # alpha < 0: no class weight
    torch.testing.assert_close(create_loss("focal")(logits, target), expected)


def test_bce_dice_is_the_weighted_sum(batch):
    logits, target = batch
    bce = F.binary_cross_entropy_with_logits(logits, target)
    dice = create_loss("dice")(logits, target)
    torch.testing.assert_close(create_loss("bce_dice", bce_weight=0.3, dice_weight=2.0)(logits, target), 0.3 * bce + 2.0 * dice)
    torch.testing.assert_close(create_loss("bce_dice")(logits, target), 0.5 * bce + 0.5 * dice)


def test_dict_and_list_specs_are_weighted_sums(batch):
    logits, target = batch
    combo = create_loss({"bce": 0.25, "jaccard": 0.75})
    assert isinstance(combo, WeightedSum)
    expected = 0.25 * create_loss("bce")(logits, target) + 0.75 * create_loss("jaccard")(logits, target)
    torch.testing.assert_close(combo(logits, target), expected)
    listed = create_loss([{"name": "tversky", "weight": 2.0, "params": {"alpha": 0.1, "beta": 0.9}}, {"name": "focal"}])
    expected = 2.0 * create_loss("tversky", alpha=0.1, beta=0.9)(logits, target) + create_loss("focal")(logits, target)
    torch.testing.assert_close(listed(logits, target), expected)


def test_combined_losses_give_each_term_that_sums_with_its_weight_to_the_loss(batch):
    logits, target = batch
    combo = DeepSupervisionLoss(create_loss({"bce": 0.25, "jaccard": 0.75}))
    loss, terms = combo.forward_with_terms(logits, target)
    assert term_names(combo) == list(terms) == ["bce", "jaccard"]
    torch.testing.assert_close(terms["bce"], F.binary_cross_entropy_with_logits(logits, target))
    tp, fp, fn = soft_counts(logits, target, dims=(0, 1, 2, 3))
    torch.testing.assert_close(terms["jaccard"], 1 - tp / (tp + fp + fn))
    torch.testing.assert_close(loss, 0.25 * terms["bce"] + 0.75 * terms["jaccard"])
    torch.testing.assert_close(loss, combo(logits, target))
    # bce_dice is a weighted sum too; a single loss has no terms
    assert list(loss_with_terms(create_loss("bce_dice"), logits, target)[1]) == ["bce", "dice"]
    single, none = loss_with_terms(create_loss("dice"), logits, target)
    assert none == {} and term_names(create_loss("dice")) == [] and term_names(lambda x, y: 0) == []
    torch.testing.assert_close(single, create_loss("dice")(logits, target))


def test_terms_of_deep_supervision_and_exclusive_classes(batch, exclusive_batch):
    logits, target = batch
    outputs = [logits, logits * 2]
    loss, terms = DeepSupervisionLoss(create_loss("bce_dice")).forward_with_terms(outputs, target)
    parts = [loss_with_terms(create_loss("bce_dice"), o, target)[1] for o in outputs]
    for name in ("bce", "dice"):
        torch.testing.assert_close(terms[name], (parts[0][name] + parts[1][name]) / 2)
    torch.testing.assert_close(loss, 0.5 * terms["bce"] + 0.5 * terms["dice"])
    logits, target, index = exclusive_batch
    _, terms = loss_with_terms(create_loss("bce_dice", mode="multiclass"), logits, target)
    torch.testing.assert_close(terms["bce"], F.cross_entropy(logits, index))


def test_multilabel_averages_independent_channels():
    torch.manual_seed(1)
    logits, target = torch.randn(2, 3, 8, 8), (torch.rand(2, 3, 8, 8) > 0.5).float()
    per_channel = [create_loss("dice")(logits[:, k : k + 1], target[:, k : k + 1]) for k in range(3)]
    torch.testing.assert_close(create_loss("dice", mode="multilabel")(logits, target), torch.stack(per_channel).mean())
    bce = create_loss("bce_dice", mode="multilabel")(logits, target)
    assert bce.ndim == 0 and torch.isfinite(bce)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(KeyError, match="unknown loss 'dise'; valid: bce, bce_dice, dice"):
        create_loss("dise")
    with pytest.raises(KeyError, match="unknown loss 'lovasz'"):
        create_loss({"bce": 1.0, "lovasz": 1.0})


@pytest.mark.parametrize(
    "spec,kwargs,match",
    [
        ("tversky", {"alpah": 0.3}, r"no parameter\(s\) \['alpah'\]; valid: alpha, beta"),
        ({"bce": 1.0}, {"smooth": 1.0}, "parameters go in the list form"),
        ([{"name": "dice", "wieght": 2}], {}, "may have only 'weight' and 'params'"),
        ([], {}, "no terms"),
        (3, {}, "must be a name"),
    ],
)
def test_bad_specs(spec, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create_loss(spec, **kwargs)


def test_unknown_mode():
    with pytest.raises(ConfigError, match="'softmax' is not one of binary, multilabel, multiclass"):
        create_loss("dice", mode="softmax")


def test_deep_supervision_averages_outputs(batch):
    logits, target = batch
    loss = create_loss("bce_dice")
    wrapped = DeepSupervisionLoss(loss)
    outputs = [logits, logits * 2, logits - 1]
    expected = torch.stack([loss(o, target) for o in outputs]).mean()
    torch.testing.assert_close(wrapped(outputs, target), expected)
    torch.testing.assert_close(wrapped(logits, target), loss(logits, target))


def test_deep_supervision_trains_unetpp():
    model = create_model("unetpp", base_channels=4, depth=2, deep_supervision=True).train()
    target = torch.zeros(2, 1, 16, 16)
    target[:, :, 4:12, 4:12] = 1
    loss = DeepSupervisionLoss(create_loss("bce_dice"))(model(torch.randn(2, 3, 16, 16)), target)
    loss.backward()
    assert all(head.weight.grad is not None for head in model.heads)


@pytest.fixture
def exclusive_batch():
    """Logits over background and 2 exclusive classes, and the one-hot of the classes (background implied)."""
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 8, 8)
    index = torch.randint(0, 3, (2, 8, 8))
    target = torch.stack([(index == 1), (index == 2)], dim=1).float()
    return logits, target, index


def test_exclusive_classes_take_cross_entropy_and_softmax_dice(exclusive_batch):
    logits, target, index = exclusive_batch
    torch.testing.assert_close(create_loss("bce", mode="multiclass")(logits, target), F.cross_entropy(logits, index))
    p, onehot = torch.softmax(logits, 1), F.one_hot(index, 3).permute(0, 3, 1, 2).float()
    dice = 2 * (p * onehot).sum((0, 2, 3)) / (p + onehot).sum((0, 2, 3))
    torch.testing.assert_close(create_loss("dice", mode="multiclass")(logits, target), (1 - dice).mean())
    combined = create_loss("bce_dice", mode="multiclass")(logits, target)
    torch.testing.assert_close(combined, 0.5 * F.cross_entropy(logits, index) + 0.5 * (1 - dice).mean())


@pytest.mark.parametrize("name", ["bce", "bce_dice", "dice", "focal", "jaccard", "tversky"])
def test_every_loss_prefers_the_right_exclusive_class(exclusive_batch, name):
    logits, target, index = exclusive_batch
    right = F.one_hot(index, 3).permute(0, 3, 1, 2).float() * 20 - 10
    loss = create_loss(name, mode="multiclass")
    assert loss(right, target) < loss(logits, target)
    assert loss(right, target) < loss(right.roll(1, dims=1), target)  # every voxel one class off


def test_regions_weights_do_not_apply_to_exclusive_classes():
    with pytest.raises(ConfigError, match="pos_weight"):
        create_loss("bce", mode="multiclass", pos_weight=2.0)
