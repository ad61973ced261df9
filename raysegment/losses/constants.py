"""Task modes, defined once (smp's own constants, so its losses understand them).

* ``binary``: one foreground class; logits and targets are ``(N, 1, H, W)``.
* ``multilabel``: K independent (possibly overlapping) regions, such as the BraTS regions; logits
  and targets are ``(N, K, H, W)``, each channel its own sigmoid.

Targets are float tensors holding 0 and 1 in both modes.
"""

from segmentation_models_pytorch.losses.constants import BINARY_MODE, MULTILABEL_MODE

MODES = (BINARY_MODE, MULTILABEL_MODE)

__all__ = ["BINARY_MODE", "MULTILABEL_MODE", "MODES"]
