"""The model registry: ``create_model(name, in_channels=, classes=, **cfg)`` and friends.

Each model family registers a builder ``fn(in_channels, classes, **options) -> nn.Module`` under
its name (``@MODELS.register("unet")``), as timm's ``register_model`` does. A builder's keyword
arguments are the model's configuration: their defaults are the published defaults, and an unknown
option is a :class:`~raysegment.errors.ConfigError` that lists the valid ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from raysegment.errors import ConfigError
from raysegment.registry import Registry

ModelBuilder = Callable[..., nn.Module]

MODELS: Registry[ModelBuilder] = Registry("model")

#: Options through which a builder downloads pretrained weights; loading a checkpoint or counting
#: parameters sets them to None so that nothing is fetched.
PRETRAINED_OPTIONS = ("encoder_weights", "weights")


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return MODELS.names()


def model_options(name: str) -> dict[str, Any]:
    """The configuration options of a model with their defaults (``in_channels``/``classes`` excluded).

    A builder that also forwards extra options to a library (``**options``) lists only its own here.
    """
    params = inspect.signature(MODELS.get(name)).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.kind is p.KEYWORD_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in ("in_channels", "classes"))
    }


def model_description(name: str) -> str:
    """First line of the builder's docstring."""
    doc = inspect.getdoc(MODELS.get(name)) or ""
    return doc.splitlines()[0] if doc else ""


def create_model(name: str, *, in_channels: int = 3, classes: int = 1, **cfg) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models` (unknown names raise ``KeyError`` listing them).
        in_channels: image channels (MRI sequences) fed to the model.
        classes: output channels K, one logit map per (possibly overlapping) region.
        **cfg: model options, see :func:`model_options`.

    Returns:
        A module mapping ``(N, in_channels, H, W)`` images to ``(N, classes, H, W)`` logits
        (models with deep supervision return a list of such tensors in training mode).
    """
    builder = MODELS.get(name)
    if in_channels < 1 or classes < 1:
        raise ConfigError(f"model {name!r}: in_channels and classes must be >= 1, got {in_channels} and {classes}")
    _check_options(name, builder, cfg)
    return builder(in_channels=in_channels, classes=classes, **cfg)


def without_pretrained(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with every weight-download option of model ``name`` set to None."""
    accepted = inspect.signature(MODELS.get(name)).parameters
    return {**cfg, **{option: None for option in PRETRAINED_OPTIONS if option in accepted}}


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters, frozen ones included unless ``trainable_only``.

    Works on models built on the ``meta`` device (shapes only, no memory).
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _check_options(name: str, builder: ModelBuilder, cfg: dict[str, Any]) -> None:
    params = inspect.signature(builder).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return  # the builder validates what it forwards
    unknown = sorted(set(cfg) - set(params))
    if unknown:
        valid = ", ".join(model_options(name))
        raise ConfigError(f"model {name!r} has no option {', '.join(map(repr, unknown))}; valid: {valid}")
