"""Segmentation losses by name and weighted combinations (``create_loss(spec, mode=)``)."""

from raysegment.losses.catalog import LOSSES
from raysegment.losses.combine import ClassIndexTarget, DeepSupervisionLoss, WeightedSum, loss_with_terms, term_names
from raysegment.losses.constants import BINARY_MODE, MODES, MULTICLASS_MODE, MULTILABEL_MODE, loss_mode
from raysegment.losses.factory import LossSpec, create_loss, list_losses

__all__ = [
    "BINARY_MODE",
    "LOSSES",
    "MODES",
    "MULTICLASS_MODE",
    "MULTILABEL_MODE",
    "ClassIndexTarget",
    "DeepSupervisionLoss",
    "LossSpec",
    "WeightedSum",
    "create_loss",
    "list_losses",
    "loss_mode",
    "loss_with_terms",
    "term_names",
]
