"""Segmentation losses by name and weighted combinations (``create_loss(spec, mode=)``)."""

from raysegment.losses.catalog import LOSSES
from raysegment.losses.combine import DeepSupervisionLoss, WeightedSum
from raysegment.losses.constants import BINARY_MODE, MODES, MULTILABEL_MODE
from raysegment.losses.factory import LossSpec, create_loss, list_losses

__all__ = [
    "BINARY_MODE",
    "LOSSES",
    "MODES",
    "MULTILABEL_MODE",
    "DeepSupervisionLoss",
    "LossSpec",
    "WeightedSum",
    "create_loss",
    "list_losses",
]
