"""3D training examples: random patches of the preprocessed volumes, augmented, in Ray Data tasks.

nnU-Net's sampling: each draw is a ``patch_size`` window of one volume, centred on a random
foreground voxel for a third of the draws (``foreground_share``) so rare small structures are seen
in most batches, anywhere in the volume otherwise. A volume smaller than the patch is padded with
zeros. Each patch then goes through MONAI's random 3D transforms, configured from the job's
``augment`` section: flips along every axis, rotation and scaling, and intensity jitter
(nnU-Net's gamma, noise, blur and low resolution among them, :mod:`raysegment.train.intensity`).

All of it runs in Ray Data ``flat_map`` tasks over the cached volumes, ahead of the trainer, so
the training loop only moves ready batches to the device. Every pass over the dataset (an epoch)
runs the tasks again and draws new patches.
"""

from __future__ import annotations

import math

import numpy as np

from raysegment.train.config import AugmentConfig
from raysegment.train.intensity import intensity_transforms

#: Share of the draws centred on foreground (nnU-Net: 0.33).
FOREGROUND_SHARE = 1 / 3


def sample_patches(item: dict, patch_size: list[int], per_volume: int, foreground_share: float = FOREGROUND_SHARE,
                   augment: dict | None = None, seed: int | None = None) -> list[dict]:
    """``flat_map`` task: one preprocessed volume -> ``per_volume`` augmented patches.

    Args:
        item: ``image`` ``(C, D, H, W)``, ``mask`` ``(K, D, H, W)`` and ``volume`` (its index).
        augment: an :class:`AugmentConfig` dump; None or disabled: patches as drawn.
        seed: fixes the draws (tests); None draws fresh ones on every pass.
    """
    rng = np.random.default_rng(seed)
    image, mask = np.array(item["image"], np.float32), np.array(item["mask"], np.float32)  # writable: MONAI wraps them as tensors
    image, mask = _pad_to(image, patch_size), _pad_to(mask, patch_size)
    foreground = np.argwhere(mask.any(axis=0))
    transform = _transform(AugmentConfig.model_validate(augment)) if augment else None
    if transform is not None:
        transform.set_random_state(seed=int(rng.integers(2**31)))
    out = []
    for _ in range(per_volume):
        centre = foreground[rng.integers(len(foreground))] if len(foreground) and rng.random() < foreground_share else None
        corner = _corner(image.shape[1:], patch_size, centre, rng)
        window = tuple(slice(c, c + p) for c, p in zip(corner, patch_size))
        patch = {"image": image[(slice(None), *window)], "mask": mask[(slice(None), *window)]}
        if transform is not None:
            patch = transform(patch)
            patch = {k: np.asarray(v, np.float32) for k, v in patch.items()}
            patch["mask"] = (patch["mask"] > 0.5).astype(np.float32)
        out.append({"image": np.ascontiguousarray(patch["image"]), "mask": np.ascontiguousarray(patch["mask"]),
                    "volume": item["volume"], "slice": -1})
    return out


def _pad_to(array: np.ndarray, patch_size: list[int]) -> np.ndarray:
    pad = [(0, 0)] + [(max(0, p - n) // 2, max(0, p - n) - max(0, p - n) // 2) for n, p in zip(array.shape[1:], patch_size)]
    return np.pad(array, pad) if any(any(p) for p in pad) else array


def _corner(shape, patch_size, centre, rng) -> list[int]:
    """The patch's first voxel: around ``centre`` when given (kept inside the volume), uniform otherwise."""
    if centre is None:
        return [int(rng.integers(0, n - p + 1)) for n, p in zip(shape, patch_size)]
    return [int(min(max(c - p // 2, 0), n - p)) for c, n, p in zip(centre, shape, patch_size)]


def _transform(config: AugmentConfig):
    """MONAI's dictionary transforms for one patch; None when augmentation is off."""
    from monai import transforms as T

    if not config.enabled:
        return None
    keys = ["image", "mask"]
    steps = []
    if config.hflip > 0:  # a brain or an organ has no preferred side along any axis of a patch
        steps += [T.RandFlipd(keys, prob=config.hflip, spatial_axis=axis) for axis in range(3)]
    if config.affine_p > 0 and (config.rotate or config.scale):
        angle = math.radians(config.rotate)
        steps.append(T.RandAffined(keys, prob=config.affine_p, rotate_range=(angle, angle, angle),
                                   scale_range=(config.scale,) * 3, mode=("bilinear", "bilinear"), padding_mode="zeros"))
    if config.intensity_p > 0 and config.brightness:
        steps.append(T.RandScaleIntensityd("image", factors=config.brightness, prob=config.intensity_p))
    if config.intensity_p > 0 and config.contrast:
        steps.append(T.RandAdjustContrastd("image", gamma=(1 - config.contrast, 1 + config.contrast), prob=config.intensity_p))
    steps += intensity_transforms(config, dims=3)
    return T.Compose(steps) if steps else None
