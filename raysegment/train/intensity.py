"""nnU-Net's intensity augmentations for 2D slices and 3D patches alike, through MONAI.

A model trained on a few scanners meets others at inference: the same tissue comes out brighter,
with another contrast curve, noisier, blurrier or at a coarser resolution. nnU-Net's default
training pipeline (Isensee et al. 2021) draws each of these per example; they are the part of its
augmentation that stands for scanner and protocol differences, and the one a model that misses
every lesion of an unseen site lacks. One implementation serves both paths: the 2D
:class:`raysegment.train.augment.Augmenter` after its geometric transforms, and the 3D patch
sampler (:mod:`raysegment.train.patches`). They act on the image only, never on the mask.
"""

from __future__ import annotations

from raysegment.train.config import AugmentConfig


def intensity_transforms(config: AugmentConfig, dims: int) -> list:
    """MONAI dictionary transforms on the ``image`` key for the optional nnU-Net intensity augmentations.

    Args:
        config: the job's augmentation section; ``gamma``, ``noise``, ``blur`` and
            ``low_resolution`` left unset add nothing.
        dims: 2 for ``(C, H, W)`` slices, 3 for ``(C, D, H, W)`` patches.
    """
    from monai import transforms as T

    steps = []
    if config.noise:
        steps.append(T.RandGaussianNoised("image", prob=config.noise_p, std=config.noise))  # std drawn in [0, noise]
    if config.blur:
        sigma = tuple(config.blur)
        steps.append(T.RandGaussianSmoothd("image", sigma_x=sigma, sigma_y=sigma, sigma_z=sigma, prob=config.blur_p))
    if config.low_resolution:
        steps.append(T.RandSimulateLowResolutiond("image", prob=config.low_resolution_p, zoom_range=tuple(config.low_resolution),
                                                  upsample_mode="bilinear" if dims == 2 else "trilinear"))
    if config.gamma:
        # On intensities rescaled to [0, 1], mean and spread restored after (nnU-Net's retain_stats):
        # z-scored inputs have negative values a plain power would turn into NaN.
        steps.append(T.RandAdjustContrastd("image", gamma=tuple(config.gamma), prob=config.gamma_p, retain_stats=True))
    return steps
