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
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from torch import nn

from raysegment.errors import ConfigError
from raysegment.models.encoder_weights import is_weights_file, load_encoder_weights
from raysegment.models.factory import MODELS
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

# smp and timm (which imports torchvision) are imported when an smp model is built, not when the
# registry is: every fresh Ray worker that loads a plain U-Net saves seconds of imports.


def _check_encoder(arch: str, encoder: str) -> None:
    import segmentation_models_pytorch as smp
    import timm

    known = timm.is_model(encoder[3:]) if encoder.startswith("tu-") else encoder in smp.encoders.get_encoder_names()
    if not known:
        raise ConfigError(f"smp-{arch}: unknown encoder {encoder!r} (see smp.encoders.get_encoder_names(), or tu-<timm model>)")


def _check_arch_options(arch: str, options: dict[str, Any]) -> None:
    import segmentation_models_pytorch as smp

    accepted = set(inspect.signature(getattr(smp, arch)).parameters) - _OWN_OPTIONS - {"self", "kwargs"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"model 'smp-{arch}' has no option {', '.join(map(repr, unknown))}; valid: "
            f"encoder, encoder_weights, freeze_encoder_stages, {', '.join(sorted(accepted))}"
        )


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
    import segmentation_models_pytorch as smp

    _check_encoder(arch, encoder)
    _check_arch_options(arch, options)
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
            f"smp-{arch}: could not fetch {encoder_weights!r} weights for encoder {encoder} "
            f"({' '.join(str(exc).split())[:160]}); use encoder_weights=None or a local weights file"
        ) from exc
    if from_file:
        load_encoder_weights(model.encoder, encoder_weights)
    if freeze_encoder_stages:
        freeze_stages(model.encoder, freeze_encoder_stages, in_channels)
    return model


def _builder(arch: str) -> functools.partial:
    build = functools.partial(build_smp_model, arch)
    build.__doc__ = f"{ARCHITECTURES[arch]} (smp.{arch}, resnet34 encoder by default)."
    return build


for _arch in ARCHITECTURES:
    MODELS.add(f"smp-{_arch}", _builder(_arch))
