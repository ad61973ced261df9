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


# --- 3D: sliding windows ---------------------------------------------------------------------------


def test_sliding_windows_of_a_voxelwise_model_equal_its_whole_volume_output():
    """Gaussian blending is a weighted mean of the windows' logits: for a model whose output at a voxel
    depends on that voxel alone, every window agrees, so the blend equals one pass over the whole volume."""
    from raysegment.predict import window_logits

    torch.manual_seed(0)
    model = torch.nn.Conv3d(2, 3, kernel_size=1).eval()
    volume = torch.randn(1, 2, 21, 18, 13)
    with torch.inference_mode():
        blended = window_logits(model, volume, [8, 8, 8], batch_size=3)
        np.testing.assert_allclose(blended.numpy(), model(volume).numpy(), atol=1e-5)


def test_3d_probabilities_and_mirroring_over_every_axis():
    model = create_model("dynunet", in_channels=2, classes=3, patch_size=(16, 8, 8), base_channels=4, max_channels=8).eval()
    volumes = np.random.default_rng(2).normal(size=(2, 2, 12, 10, 9)).astype(np.float32)
    prob = forward_probabilities(model, volumes, batch_size=4, exclusive=True, patch_size=[16, 8, 8])
    assert prob.shape == (2, 2, 12, 10, 9) and (prob.sum(1) <= 1 + 1e-5).all()
    from raysegment.predict import MIRROR_AXES_3D, window_logits

    x = torch.from_numpy(volumes[:1])
    with torch.inference_mode():
        views = [torch.softmax(window_logits(model, x.flip(a) if a else x, [16, 8, 8], 4), 1) for a in MIRROR_AXES_3D]
        expected = torch.stack([v.flip(a) if a else v for v, a in zip(views, MIRROR_AXES_3D)]).mean(0)[:, 1:].numpy()
    mirrored = forward_probabilities(model, volumes[:1], batch_size=4, exclusive=True, mirror=True, patch_size=[16, 8, 8])
    assert len(MIRROR_AXES_3D) == 8
    np.testing.assert_allclose(mirrored, expected, atol=1e-5)
