"""The one post-processing rule: threshold, then each class's largest connected component of the whole case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raysegment.postprocess import PostprocessConfig


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_masks_from_logits_match_the_probability_threshold(threshold):
    logits = torch.linspace(-6, 6, 1001).reshape(1, 1, -1)
    config = PostprocessConfig(threshold=threshold)
    assert torch.equal(config.masks_from_logits(logits), torch.sigmoid(logits) > threshold)


def test_largest_component_is_3d_and_per_class():
    prob = np.zeros((2, 8, 8, 4), np.float32)
    prob[0, 1:4, 1:4, 0:3] = 0.9   # class 0: a 3D blob over slices 0-2 ...
    prob[0, 6:8, 6:8, 3] = 0.9     # ... and an island on slice 3, touching it in no axis
    prob[1, 6:8, 6:8, 3] = 0.9     # class 1: only the island, which is then its largest component
    mask = PostprocessConfig(largest_component=True).apply(prob)
    assert mask.dtype == np.uint8
    assert mask[0].sum() == 27 and mask[0, 6:8, 6:8, 3].sum() == 0
    assert mask[1].sum() == 4
    assert PostprocessConfig().apply(prob)[0].sum() == 31  # off by default: threshold only


def test_empty_and_single_component_masks_are_kept_as_they_are():
    config = PostprocessConfig(largest_component=True)
    empty = np.zeros((1, 5, 5), np.uint8)
    assert config.clean(empty).sum() == 0
    one = np.zeros((1, 5, 5), np.uint8)
    one[0, 1:3, 1:3] = 1
    np.testing.assert_array_equal(config.clean(one), one)


def test_exclusive_classes_take_the_most_probable_label_where_it_beats_background():
    import torch

    from raysegment.postprocess import label_probabilities

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 6) * 3
    prob = label_probabilities(logits, exclusive=True)
    assert prob.shape == (2, 2, 6, 6) and bool((prob.sum(1) <= 1 + 1e-6).all())
    rule = PostprocessConfig(threshold=0.9)  # the threshold is for regions; classes compete instead
    winner = logits.argmax(1).numpy()
    for n in range(2):
        mask = rule.binarize(prob[n].numpy(), exclusive=True)
        np.testing.assert_array_equal(mask, np.stack([winner[n] == 1, winner[n] == 2]).astype(np.uint8))
    np.testing.assert_array_equal(rule.masks_from_logits(logits, exclusive=True).numpy(),
                                  np.stack([winner == 1, winner == 2], axis=1))
    # Regions: each sigmoid against the threshold, from probabilities or from logits alike.
    regions = label_probabilities(logits, exclusive=False).numpy()
    np.testing.assert_array_equal(rule.masks_from_logits(logits).numpy(), regions > 0.9)
