"""Probabilities -> the final mask: one post-processing rule for validation, evaluation and inference.

A :class:`PostprocessConfig` is saved inside every checkpoint beside the preprocessing, so the
figures validation selects a model by, the figures ``evaluate`` reports and the masks ``infer``
writes all come from the same rule.

Labels are either regions, each its own sigmoid and threshold, or exclusive classes (a softmax
over background and the classes), where a voxel takes the most probable class; see
``PreprocessConfig.label_mode``. The threshold applies to regions only.

The rule works on a whole case: a 2D slice, a 3D volume, or, for slice datasets (LGG: one TIFF per
slice), the patient's slices stacked in order. Keeping only the largest 3D connected component
per patient is Buda et al.'s post-processing for LGG: a FLAIR abnormality is one connected
region, so smaller islands elsewhere in the brain are false positives.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class PostprocessConfig(BaseModel):
    """Attributes:
        threshold: probability above which a voxel is foreground.
        largest_component: keep only each class's largest connected component of the case
            (3D over a volume or a patient's stacked slices; 2D for a lone slice).
        mirror: average the probabilities of the slice and its mirror images (test-time
            augmentation, as nnU-Net predicts; four forward passes per slice).
    """

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.5, gt=0, lt=1)
    largest_component: bool = False
    mirror: bool = False

    def apply(self, prob: np.ndarray, exclusive: bool = False) -> np.ndarray:
        """``(K, *spatial)`` label probabilities -> uint8 0/1 mask, post-processed."""
        return self.clean(self.binarize(prob, exclusive))

    def binarize(self, prob: np.ndarray, exclusive: bool = False) -> np.ndarray:
        """``(K, *spatial)`` label probabilities -> uint8 0/1, by :meth:`masks_from_probabilities`."""
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(prob))[None]
        return self.masks_from_probabilities(tensor, exclusive)[0].numpy().astype(np.uint8)

    def masks_from_probabilities(self, prob, exclusive: bool = False):
        """Label probabilities ``(N, K, *spatial)`` (a tensor) -> bool masks: each region above the
        threshold, or (``exclusive``) the most probable class where it is more probable than background."""
        import torch

        if not exclusive:
            return prob > self.threshold
        winner = torch.cat([1.0 - prob.sum(1, keepdim=True), prob], dim=1).argmax(1, keepdim=True)
        return winner == torch.arange(1, prob.shape[1] + 1, device=prob.device).reshape(1, -1, *[1] * (prob.ndim - 2))

    def masks_from_logits(self, logits, exclusive: bool = False):
        """Model logits ``(N, C, *spatial)`` -> bool masks ``(N, K, *spatial)``, by :meth:`masks_from_probabilities`."""
        return self.masks_from_probabilities(label_probabilities(logits, exclusive), exclusive)

    def clean(self, mask: np.ndarray) -> np.ndarray:
        """The rule's mask operations on an already thresholded ``(K, *spatial)`` mask."""
        if not self.largest_component:
            return mask
        mask = mask.copy()
        for k in range(mask.shape[0]):
            mask[k] = largest_connected_component(mask[k])
        return mask


def label_probabilities(logits, exclusive: bool = False):
    """Model logits ``(N, C, *spatial)`` -> probabilities ``(N, K, *spatial)`` of each label: sigmoids
    for regions; for exclusive classes the softmax without its background channel."""
    import torch

    return torch.softmax(logits, dim=1)[:, 1:] if exclusive else torch.sigmoid(logits)


def largest_connected_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected component of a 2D or 3D mask (all of it when there is none or one)."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return (labels == sizes.argmax()).astype(mask.dtype)
