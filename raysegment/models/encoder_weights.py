"""Loading encoder weights from a file (local or s3://) instead of the model hub.

Clusters often have no route to the hub, so a pretrained encoder is shipped as a file: a state dict
saved with ``torch.save`` (``.pt``/``.pth``/``.bin``, optionally under a ``"state_dict"`` key) or a
``.safetensors`` file. The keys are the encoder's own (``conv1.weight``, ``layer1.0.bn1.bias``...);
a whole smp model's state dict works too (its ``encoder.`` entries are used), and so does the
torchvision/timm classification model the encoder derives from (the classifier keys are ignored).
"""

from __future__ import annotations

import io
import os

import torch
from torch import nn

from raysegment import storage
from raysegment.errors import ConfigError

WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP and torch.compile


def is_weights_file(value: object) -> bool:
    """True when ``encoder_weights`` names a file rather than a hub weight set like ``"imagenet"``."""
    if not isinstance(value, str):
        return False
    return storage.is_s3(value) or value.startswith("file://") or os.sep in value or value.endswith(WEIGHT_FILE_SUFFIXES)


def strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes from state-dict keys."""
    out = {}
    for key, value in state.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def read_state_dict(uri: str) -> dict[str, torch.Tensor]:
    """Read a state dict saved with ``torch.save`` or as safetensors."""
    data = storage.read_bytes(uri)
    try:
        if uri.endswith(".safetensors"):
            from safetensors.torch import load as load_safetensors

            state = load_safetensors(data)
        else:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many unrelated types on corrupt input
        raise ConfigError(f"{uri}: not a readable weights file ({' '.join(str(exc).split())[:200]})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{uri}: not a state dict (expected a mapping of parameter names to tensors)")
    return strip_wrapper_prefixes(state)


def load_encoder_weights(encoder: nn.Module, uri: str) -> None:
    """Load the weights file ``uri`` into ``encoder``.

    Every encoder parameter and buffer must be in the file with the same shape, except that a
    first convolution trained on 3-channel images is adapted to the encoder's channel count the
    way timm and smp adapt pretrained weights (summed for 1 channel, repeated and rescaled for more).

    Raises:
        ConfigError: naming the file and the first mismatching keys.
    """
    from timm.models import adapt_input_conv  # deferred: timm imports torchvision

    state = read_state_dict(uri)
    if any(key.startswith("encoder.") for key in state):
        state = {key[len("encoder.") :]: value for key, value in state.items() if key.startswith("encoder.")}
    own = encoder.state_dict()
    # BatchNorm's step counter is bookkeeping, not weights; files from older torch lack it
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ConfigError(
            f"{uri}: {len(missing)} encoder weights missing from the file (e.g. {', '.join(missing[:3])}); "
            f"is it a state dict for this encoder?"
        )
    selected, wrong_shape = {}, []
    for key, target in own.items():
        if key not in state:
            continue
        value = state[key]
        if value.shape != target.shape and value.ndim == 4 and value.shape[1] == 3 and value.shape[0] == target.shape[0]:
            value = adapt_input_conv(target.shape[1], value)
        if value.shape != target.shape:
            wrong_shape.append(f"{key} {tuple(value.shape)} vs {tuple(target.shape)}")
        selected[key] = value
    if wrong_shape:
        raise ConfigError(f"{uri}: weights have the wrong shape for this encoder ({'; '.join(wrong_shape[:3])})")
    nn.Module.load_state_dict(encoder, selected, strict=False)
