"""Augmentation: image and mask move together, seeds reproduce, validation-style input untouched when off."""

from __future__ import annotations

import numpy as np

from raysegment.train.augment import Augmenter
from raysegment.train.config import AugmentConfig


def _batch(n=4, channels=4, classes=2, size=32, seed=0):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, classes, size, size), np.float32)
    for i in range(n):
        for k in range(classes):
            y, x = rng.integers(4, size - 12, size=2)
            masks[i, k, y:y + 8, x:x + 6] = 1
    images = np.concatenate([masks, rng.random((n, channels - classes, size, size), dtype=np.float32)], axis=1)
    return images, masks


def test_flip_is_exact_on_image_and_mask():
    images, masks = _batch()
    out_images, out_masks = Augmenter(AugmentConfig(hflip=1.0, affine_p=0, intensity_p=0))(images, masks)
    np.testing.assert_array_equal(out_images, images[..., ::-1])
    np.testing.assert_array_equal(out_masks, masks[..., ::-1])


def test_geometric_transform_is_the_same_for_image_and_mask():
    images, masks = _batch()
    augment = Augmenter(AugmentConfig(hflip=0.5, vflip=0.5, rotate=30, shift=0.1, scale=0.2, affine_p=1.0, intensity_p=0))
    augment.seed(0, 1, 0)
    out_images, out_masks = augment(images, masks)
    assert out_images.shape == images.shape and out_masks.shape == masks.shape
    assert set(np.unique(out_masks)) <= {0.0, 1.0}  # nearest-neighbour for masks
    assert not np.array_equal(out_masks, masks)
    # The first channels of the image were the masks: after the transform they still coincide.
    agreement = ((out_images[:, :2] > 0.5) == (out_masks > 0.5)).mean()
    assert agreement > 0.99


def test_seeded_sequences_repeat_and_differ_by_epoch():
    images, masks = _batch()
    augment = Augmenter(AugmentConfig(affine_p=1.0, intensity_p=1.0))
    runs = []
    for epoch in (1, 1, 2):
        augment.seed(7, epoch, 0)
        runs.append(augment(images, masks))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert not np.array_equal(runs[0][0], runs[2][0])


def test_intensity_jitter_leaves_masks_alone():
    images, masks = _batch()
    out_images, out_masks = Augmenter(AugmentConfig(hflip=0, affine_p=0, intensity_p=1.0, brightness=0.3, contrast=0.3))(images, masks)
    np.testing.assert_array_equal(out_masks, masks)
    assert not np.allclose(out_images, images)


def test_disabled_is_identity():
    images, masks = _batch()
    out_images, out_masks = Augmenter(AugmentConfig(enabled=False))(images, masks)
    assert out_images is images and out_masks is masks


NNUNET_INTENSITY = {"gamma": (0.7, 1.5), "noise": 0.1, "blur": (0.5, 1.0), "low_resolution": (0.5, 1.0)}


def test_nnunet_intensity_transforms_change_the_image_only_and_repeat_with_the_seed():
    images, masks = _batch()
    images = (images - images.mean()) / images.std()  # z-scored, negative values included
    config = AugmentConfig(hflip=0, affine_p=0, intensity_p=0, gamma_p=1.0, noise_p=1.0, blur_p=1.0, low_resolution_p=1.0, **NNUNET_INTENSITY)
    augment = Augmenter(config)
    assert augment.active
    augment.seed(3)
    out_images, out_masks = augment(images, masks)
    np.testing.assert_array_equal(out_masks, masks)
    assert np.isfinite(out_images).all() and not np.allclose(out_images, images)
    # Blur and the coarser scan smooth the edges: less energy in the differences between neighbours.
    assert np.abs(np.diff(out_images, axis=-1)).mean() < np.abs(np.diff(images, axis=-1)).mean()
    augment.seed(3)
    np.testing.assert_array_equal(augment(images, masks)[0], out_images)


def test_gamma_keeps_each_images_mean_and_spread():
    images, masks = _batch()
    images = (images - images.mean()) / images.std()
    out_images, _ = Augmenter(AugmentConfig(hflip=0, affine_p=0, intensity_p=0, gamma=(0.5, 0.5), gamma_p=1.0))(images, masks)
    assert not np.allclose(out_images, images)
    np.testing.assert_allclose(out_images.mean(axis=(1, 2, 3)), images.mean(axis=(1, 2, 3)), atol=1e-4)
    np.testing.assert_allclose(out_images.std(axis=(1, 2, 3)), images.std(axis=(1, 2, 3)), rtol=1e-3)


def test_3d_patches_get_the_same_intensity_transforms():
    from raysegment.train.patches import sample_patches

    rng = np.random.default_rng(0)
    item = {"image": rng.standard_normal((1, 12, 12, 12), dtype=np.float32), "mask": np.zeros((1, 12, 12, 12), np.float32), "volume": 0}
    plain = AugmentConfig(hflip=0, affine_p=0, intensity_p=0)
    jittered = plain.model_copy(update={"gamma_p": 1.0, "noise_p": 1.0, "blur_p": 1.0, "low_resolution_p": 1.0, **NNUNET_INTENSITY})
    before = sample_patches(item, [12, 12, 12], 1, augment=plain.model_dump(), seed=0)[0]
    after = sample_patches(item, [12, 12, 12], 1, augment=jittered.model_dump(), seed=0)[0]
    np.testing.assert_array_equal(before["image"], item["image"])
    assert after["image"].shape == (1, 12, 12, 12) and np.isfinite(after["image"]).all()
    assert np.abs(np.diff(after["image"], axis=-1)).mean() < np.abs(np.diff(before["image"], axis=-1)).mean()
    np.testing.assert_array_equal(after["mask"], item["mask"])
