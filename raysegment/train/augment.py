"""Config-driven, on-the-fly augmentation of 2D training batches: albumentations, then nnU-Net's intensity transforms.

It runs in Ray Data tasks over the cached training examples (:func:`augment_batch`), ahead of
the trainer and on other CPUs than its workers', so the training loop only moves ready batches to
the device; every epoch's pass draws new transforms. Validation data is never augmented. 3D
patches are augmented where they are cut (:mod:`raysegment.train.patches`).
"""

from __future__ import annotations

import functools
import json

import numpy as np

from raysegment.train.config import AugmentConfig
from raysegment.train.intensity import intensity_transforms


class Augmenter:
    """Same random geometric transform on image and mask; intensity jitter on the image only.

    Args:
        config: the job's augmentation section.
    """

    def __init__(self, config: AugmentConfig):
        import albumentations as A

        self.config = config
        transforms = []
        if config.hflip > 0:
            transforms.append(A.HorizontalFlip(p=config.hflip))
        if config.vflip > 0:
            transforms.append(A.VerticalFlip(p=config.vflip))
        if config.affine_p > 0 and (config.rotate or config.shift or config.scale):
            transforms.append(
                A.Affine(
                    rotate=(-config.rotate, config.rotate),
                    translate_percent=(-config.shift, config.shift),
                    scale=(1 - config.scale, 1 + config.scale),
                    border_mode=0,
                    p=config.affine_p,
                )
            )
        if config.intensity_p > 0 and (config.brightness or config.contrast):
            transforms.append(
                A.RandomBrightnessContrast(
                    brightness_limit=config.brightness, contrast_limit=config.contrast, p=config.intensity_p
                )
            )
        self.pipeline = A.Compose(transforms) if transforms else None
        steps = intensity_transforms(config, dims=2)
        if steps:
            from monai.transforms import Compose

            self.intensity = Compose(steps)
        else:
            self.intensity = None

    @property
    def active(self) -> bool:
        return self.config.enabled and (self.pipeline is not None or self.intensity is not None)

    def seed(self, *key: int) -> None:
        """Restart the random sequence at the one ``key`` (e.g. seed, epoch, rank) gives."""
        first, second = (int(v) for v in np.random.SeedSequence([int(k) for k in key]).generate_state(2))
        if self.pipeline is not None:
            self.pipeline.set_random_seed(first)
        if self.intensity is not None:
            self.intensity.set_random_state(seed=second)

    def __call__(self, images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Augment a batch.

        Shape:
            images ``(N, C, H, W)`` float32, masks ``(N, K, H, W)`` float32 -> same shapes.
        """
        if not self.active:
            return images, masks
        out_images, out_masks = np.empty_like(images), np.empty_like(masks)
        for i in range(len(images)):
            image, mask = images[i], masks[i]
            if self.pipeline is not None:
                result = self.pipeline(image=np.ascontiguousarray(image.transpose(1, 2, 0)),
                                       mask=np.ascontiguousarray(mask.transpose(1, 2, 0)))
                image = np.asarray(result["image"]).reshape(images.shape[2:] + images.shape[1:2]).transpose(2, 0, 1)
                mask = np.asarray(result["mask"]).reshape(masks.shape[2:] + masks.shape[1:2]).transpose(2, 0, 1)
            if self.intensity is not None:
                image = np.asarray(self.intensity({"image": np.array(image, np.float32)})["image"])
            out_images[i], out_masks[i] = image, mask
        return out_images, out_masks


@functools.lru_cache(maxsize=4)
def _augmenter(config_json: str) -> Augmenter:
    return Augmenter(AugmentConfig.model_validate_json(config_json))


def augment_batch(batch: dict[str, np.ndarray], augment: dict) -> dict[str, np.ndarray]:
    """Ray Data ``map_batches`` task: a batch of 2D examples, augmented with fresh random draws.

    Shape:
        ``image`` ``(N, C, H, W)`` and ``mask`` ``(N, K, H, W)`` float32; other columns pass through.
    """
    augmenter = _augmenter(json.dumps(augment, sort_keys=True))
    augmenter.seed(*np.random.SeedSequence().generate_state(2))  # a new draw on every pass, in every task
    images, masks = augmenter(np.asarray(batch["image"], np.float32), np.asarray(batch["mask"], np.float32))
    return {**batch, "image": images, "mask": masks}
