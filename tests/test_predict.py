"""The one forward pass of evaluate and infer: fixed-size batches, label probabilities, mirror test-time augmentation."""

from __future__ import annotations

import numpy as np
import torch

from raysegment.models import create_model
from raysegment.predict import forward_probabilities


def _model(classes=1):
    torch.manual_seed(0)
    return create_model("unet", in_channels=2, classes=classes, base_channels=4, depth=2).eval()


def test_probabilities_do_not_depend_on_batching():
    model, slices = _model(), np.random.default_rng(0).normal(size=(5, 2, 16, 16)).astype(np.float32)
    whole = forward_probabilities(model, slices, batch_size=4)
    with torch.inference_mode():
        by_hand = torch.sigmoid(model(torch.from_numpy(slices))).numpy()
    assert whole.shape == (5, 1, 16, 16)
    np.testing.assert_allclose(whole, by_hand, atol=1e-5)
    np.testing.assert_array_equal(forward_probabilities(model, slices[:3], batch_size=4), whole[:3])  # bit for bit


def test_mirror_averages_the_flipped_predictions_and_exclusive_drops_background():
    model, slices = _model(classes=3), np.random.default_rng(1).normal(size=(2, 2, 16, 16)).astype(np.float32)
    mirrored = forward_probabilities(model, slices, batch_size=2, exclusive=True, mirror=True)
    x = torch.from_numpy(slices)
    with torch.inference_mode():
        views = [torch.softmax(model(x.flip(a) if a else x), 1).flip(a) if a else torch.softmax(model(x), 1)
                 for a in ((), (-1,), (-2,), (-2, -1))]
    expected = torch.stack(views).mean(0)[:, 1:].numpy()
    assert mirrored.shape == (2, 2, 16, 16)
    np.testing.assert_allclose(mirrored, expected, atol=1e-5)
    plain = forward_probabilities(model, slices, batch_size=2, exclusive=True)
    assert not np.allclose(mirrored, plain)  # an untrained model is not symmetric: the views differ
