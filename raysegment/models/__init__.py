"""Segmentation models by name, and the checkpoint format.

``create_model(name, in_channels=, classes=, **cfg)`` builds any registered model (``unet``,
``unetpp``, ``transunet``, ``smp-<Arch>``); every model maps ``(N, in_channels, H, W)`` images to
``(N, classes, H, W)`` logits. ``save_model``/``load_model`` write and read checkpoints.
"""

# importing the model modules registers them
from raysegment.models import dynunet, smp_models, transunet, unet, unetpp  # noqa: F401
from raysegment.models.checkpoint import CheckpointError, ModelSpec, load_model, read_metadata, save_model
from raysegment.models.factory import MODELS, count_parameters, create_model, list_models, model_description, model_options

__all__ = [
    "MODELS",
    "CheckpointError",
    "ModelSpec",
    "count_parameters",
    "create_model",
    "list_models",
    "load_model",
    "model_description",
    "model_options",
    "read_metadata",
    "save_model",
]
