"""Task modes, defined once (smp's own constants, so its losses understand them).

* ``binary``: one foreground class; logits and targets are ``(N, 1, H, W)``.
* ``multilabel``: K independent (possibly overlapping) regions, such as the BraTS regions; logits
  and targets are ``(N, K, H, W)``, each channel its own sigmoid.
* ``multiclass``: K exclusive classes; logits are ``(N, K + 1, H, W)``, a softmax over background
  and the classes; targets are the ``(N, K, H, W)`` one-hot of the classes (background implied).

Targets are float tensors holding 0 and 1 in every mode.
"""

from segmentation_models_pytorch.losses.constants import BINARY_MODE, MULTICLASS_MODE, MULTILABEL_MODE

MODES = (BINARY_MODE, MULTILABEL_MODE, MULTICLASS_MODE)


def loss_mode(labels: int, exclusive: bool) -> str:
    """The mode of a task with ``labels`` labels, exclusive classes or not."""
    if exclusive:
        return MULTICLASS_MODE
    return BINARY_MODE if labels == 1 else MULTILABEL_MODE


__all__ = ["BINARY_MODE", "MULTICLASS_MODE", "MULTILABEL_MODE", "MODES", "loss_mode"]
