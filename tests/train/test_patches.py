"""3D training patches: foreground oversampling, padding, MONAI augmentation, cut in Ray Data tasks."""

from __future__ import annotations

import numpy as np
import pytest

from raysegment.train.config import AugmentConfig
from raysegment.train.patches import sample_patches


def _volume(shape=(40, 48, 32)):
    image = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)
    mask = np.zeros((2, *shape), np.float32)
    mask[0, 30:34, 40:44, 2:5] = 1  # a small structure near a corner
    mask[1, 30:34, 44:46, 2:5] = 1
    return {"image": image, "mask": mask, "volume": 7}


def test_a_third_of_the_draws_are_centred_on_foreground():
    item = _volume()
    patches = sample_patches(item, [16, 16, 16], per_volume=600, seed=0)
    with_fg = np.mean([p["mask"].any() for p in patches])
    # Foreground covers ~0.1% of the voxels: uniform draws rarely hit it, the centred third always does.
    uniform = np.mean([p["mask"].any() for p in sample_patches(item, [16, 16, 16], per_volume=600, foreground_share=0.0, seed=0)])
    assert with_fg == pytest.approx(1 / 3 + (2 / 3) * uniform, abs=0.06)
    assert uniform < 0.2
    assert all(p["image"].shape == (1, 16, 16, 16) and p["mask"].shape == (2, 16, 16, 16) and p["volume"] == 7 for p in patches)
    # A centred patch holds the image values of its window (no augmentation): found in the volume.
    centred = next(p for p in patches if p["mask"].any())
    corner = np.argwhere(item["image"][0] == centred["image"][0, 0, 0, 0])[0]
    np.testing.assert_array_equal(item["image"][:, corner[0]:corner[0] + 16, corner[1]:corner[1] + 16, corner[2]:corner[2] + 16], centred["image"])


def test_small_volumes_are_padded_and_augmented_masks_stay_binary():
    item = _volume(shape=(10, 12, 6))
    item["mask"][0, 2:8, 2:8, 1:5] = 1
    patches = sample_patches(item, [16, 16, 8], per_volume=20, augment=AugmentConfig(affine_p=1.0, rotate=30).model_dump(), seed=1)
    for p in patches:
        assert p["image"].shape == (1, 16, 16, 8) and p["mask"].shape == (2, 16, 16, 8)
        assert set(np.unique(p["mask"])) <= {0.0, 1.0}
    # Without augmentation the whole volume sits inside the zero padding of every patch.
    plain = sample_patches(item, [16, 16, 8], per_volume=1, seed=1)[0]
    assert plain["mask"].sum() == item["mask"].sum() and plain["image"][0].sum() == pytest.approx(item["image"].sum(), rel=1e-5)
    # Rotations move the structure: augmented patches differ from each other.
    assert len({p["mask"].sum() for p in patches}) > 1


def test_patches_are_drawn_in_ray_data_tasks_anew_each_pass(ray_session):
    import ray.data

    from raysegment.train.data import patch_dataset

    volumes = ray.data.from_items([_volume(), {**_volume(), "volume": 8}]).materialize()
    ds = patch_dataset(volumes, [16, 16, 16], per_volume=3, augment=None)
    first = list(ds.iter_rows())
    second = list(ds.iter_rows())
    assert len(first) == len(second) == 6 and sorted(r["volume"] for r in first) == [7, 7, 7, 8, 8, 8]
    assert any(not np.array_equal(a["image"], b["image"]) for a, b in zip(first, second))
