"""segmentation-models-pytorch architectures, registered as ``smp-<Arch>`` (``smp-Unet``, ``smp-FPN``...).

Options common to every architecture:

* ``encoder``: any smp encoder (``resnet34``, ``resnet50``, ``vgg16``, ``efficientnet-b0``...) or
  timm encoder as ``tu-<timm name>``. VGG encoders need inputs divisible by 32, like the others at
  the default ``encoder_depth=5``.
* ``encoder_weights``: ``"imagenet"`` (smp's default, downloaded from the hub), None for random
  initialisation, or a weights file (local path or s3:// URI, see
  :mod:`raysegment.models.encoder_weights`) loaded into the encoder.
* ``freeze_encoder_stages``: freeze the first N encoder stages (see :mod:`raysegment.models.freezing`).

Any other option goes to the smp architecture (``decoder_channels``, ``encoder_depth``...).

``unet`` and ``unetpp`` take an ``encoder`` too: their own convolutional encoder by default
(``classic``), or any encoder above, which makes them ``smp.Unet``/``smp.UnetPlusPlus`` built here
(:func:`build_with_encoder`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from raysegment.errors import ConfigError
from raysegment.models.encoder_weights import is_weights_file, load_encoder_weights
from raysegment.models.factory import MODELS, model_options
from raysegment.models.freezing import freeze_encoder_stages as freeze_stages

#: smp architecture class name -> one-line description for ``raysegment models``.
ARCHITECTURES = {
    "Unet": "U-Net decoder on a pretrained encoder",
    "UnetPlusPlus": "U-Net++ nested decoder on a pretrained encoder",
    "DeepLabV3Plus": "DeepLabV3+: atrous spatial pyramid pooling + low-level skip",
    "FPN": "Feature Pyramid Network decoder",
    "MAnet": "Multi-scale attention network (position + channel attention)",
}

_OWN_OPTIONS = {"encoder_name", "encoder_weights", "in_channels", "classes"}

#: The ``encoder`` of ``unet``/``unetpp`` that means their own convolutional encoder (None too).
CLASSIC_ENCODER = "classic"

# smp and timm (which imports torchvision) are imported when an smp model is built, not when the
# registry is: every fresh Ray worker that loads a plain U-Net saves seconds of imports.


def _check_encoder(name: str, encoder: str) -> None:
    import segmentation_models_pytorch as smp
    import timm

    known = timm.is_model(encoder[3:]) if encoder.startswith("tu-") else encoder in smp.encoders.get_encoder_names()
    if not known:
        raise ConfigError(f"{name}: unknown encoder {encoder!r} (see smp.encoders.get_encoder_names(), or tu-<timm model>)")


def _check_arch_options(name: str, arch: str, options: dict[str, Any], own: str) -> None:
    import segmentation_models_pytorch as smp

    accepted = set(inspect.signature(getattr(smp, arch)).parameters) - _OWN_OPTIONS - {"self", "kwargs"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(f"model {name!r} has no option {', '.join(map(repr, unknown))}; valid: {own}, {', '.join(sorted(accepted))}")


def build_smp_model(
    arch: str,
    in_channels: int = 3,
    classes: int = 1,
    encoder: str = "resnet34",
    encoder_weights: str | None = "imagenet",
    freeze_encoder_stages: int = 0,
    **options: Any,
) -> nn.Module:
    """Build ``smp.<arch>``; see the module docstring for the options."""
    return _build(f"smp-{arch}", arch, in_channels, classes, encoder, encoder_weights, freeze_encoder_stages, options,
                  "encoder, encoder_weights, freeze_encoder_stages")


def _build(name: str, arch: str, in_channels: int, classes: int, encoder: str, encoder_weights: str | None,
           freeze_encoder_stages: int, options: dict[str, Any], own: str) -> nn.Module:
    """``smp.<arch>`` for the registered model ``name`` (messages name it; ``own`` lists its own options)."""
    import segmentation_models_pytorch as smp

    _check_encoder(name, encoder)
    _check_arch_options(name, arch, options, own)
    from_file = is_weights_file(encoder_weights)
    hub_weights = None if from_file else encoder_weights
    if hub_weights is not None and encoder.startswith("tu-"):
        hub_weights = True  # timm encoders take a flag; the weight set is part of the timm name
    try:
        model = smp.create_model(
            arch, encoder_name=encoder, encoder_weights=hub_weights, in_channels=in_channels, classes=classes, **options
        )
    except OSError as exc:  # the hub is unreachable, or has no such weights
        raise ConfigError(
            f"{name}: could not fetch {encoder_weights!r} weights for encoder {encoder} "
            f"({' '.join(str(exc).split())[:160]}); use encoder_weights=None or a local weights file"
        ) from exc
    if from_file:
        load_encoder_weights(model.encoder, encoder_weights)
    if freeze_encoder_stages:
        freeze_stages(model.encoder, freeze_encoder_stages, in_channels)
    return model


def is_classic(encoder: str | None) -> bool:
    """True when ``encoder`` names the own convolutional encoder of ``unet``/``unetpp``."""
    return encoder is None or encoder == CLASSIC_ENCODER


def build_with_encoder(name: str, arch: str, classic: Callable[..., nn.Module], in_channels: int, classes: int,
                       encoder: str | None, **options: Any) -> nn.Module:
    """The builder of ``unet`` and ``unetpp``: their classic model, or ``smp.<arch>`` on an smp/timm encoder.

    Args:
        name: the registered model (its builder's defaults are read with ``model_options``).
        arch: the smp architecture used with an smp/timm encoder (``Unet``, ``UnetPlusPlus``).
        classic: the hand-written model; its keyword arguments are the classic-only options.
        encoder: None or ``"classic"`` for ``classic``, else an smp encoder or ``tu-<timm name>``.
        options: every other option as passed (the builder's own, defaults included, and extra ones
            for smp: ``decoder_channels``...).

    Raises:
        ConfigError: an option of the other kind of encoder is set (a classic-only option away from
            its default with an smp encoder; an smp option with the classic encoder).
    """
    defaults = model_options(name)
    classic_keys = [key for key in inspect.signature(classic).parameters if key not in ("in_channels", "classes")]
    if is_classic(encoder):
        smp_only = {key: value for key, value in options.items() if key not in classic_keys}
        unknown = sorted(key for key in smp_only if key not in defaults)
        if unknown:
            raise ConfigError(f"model {name!r} has no option {', '.join(map(repr, unknown))} with the classic encoder; "
                              f"valid: {', '.join(classic_keys)}, encoder (an smp/timm encoder takes smp's options)")
        # encoder_weights=None is what loading a checkpoint passes to every model
        changed = [f"{key}={value!r}" for key, value in smp_only.items() if value != defaults[key] and value is not None]
        if changed:
            raise ConfigError(f"{name}: {', '.join(changed)} applies to smp/timm encoders only, not to the classic encoder; "
                              f"set encoder (e.g. resnet34) or drop it")
        return classic(in_channels=in_channels, classes=classes, **{key: options[key] for key in classic_keys})
    changed = [f"{key}={options[key]!r}" for key in classic_keys if options[key] != defaults[key]]
    if changed:
        raise ConfigError(f"{name}: {', '.join(changed)} applies to the classic encoder only, not to encoder {encoder!r}; "
                          f"drop it or set encoder: {CLASSIC_ENCODER}")
    smp_options = {key: value for key, value in options.items() if key not in classic_keys}
    own = [key for key in defaults if key not in classic_keys]
    return _build(name, arch, in_channels, classes, encoder, smp_options.pop("encoder_weights"),
                  smp_options.pop("freeze_encoder_stages"), smp_options, ", ".join(own))


def _builder(arch: str) -> functools.partial:
    build = functools.partial(build_smp_model, arch)
    build.__doc__ = f"{ARCHITECTURES[arch]} (smp.{arch}, resnet34 encoder by default)."
    return build


for _arch in ARCHITECTURES:
    MODELS.add(f"smp-{_arch}", _builder(_arch))
