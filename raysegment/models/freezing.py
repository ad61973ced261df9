"""Freezing the first stages of a pretrained encoder.

A *stage* is defined by the feature maps the encoder returns, shallowest first: stage ``k`` holds
the parameters that the ``k``-th feature map depends on and no shallower one does; feature maps that
need no new parameters (smp's identity feature at full resolution, VGG's final pooling, the empty
placeholder of transformer encoders) are not stages. Dependence is read from the autograd graph
of one small forward pass, so the definition holds for every smp and timm (``tu-``) encoder:

* ResNet (smp and timm): stem (``conv1``/``bn1``), ``layer1`` ... ``layer4`` -> 5 stages.
* VGG: the five convolution blocks between max-poolings -> 5 stages.
* EfficientNet, MobileNet and other timm encoders: the stem (for some encoders with the blocks that
  keep its resolution), then the blocks ending at strides 4, 8, 16 and 32.

Frozen parameters stop requiring gradients, and BatchNorm layers whose parameters are all frozen
stay in eval mode (running statistics neither used from the batch nor updated) even when the model
is put in training mode: a forward pre-hook switches them back before each call.
"""

from __future__ import annotations

import torch
from torch import nn

from raysegment.errors import ConfigError

TRACE_SIZE = 64  # input height/width of the tracing pass: divisible by every encoder's stride


def encoder_stages(encoder: nn.Module, in_channels: int) -> list[list[str]]:
    """Names of the encoder's trainable parameters, grouped by stage (shallowest first)."""
    named = [(name, p) for name, p in encoder.named_parameters() if p.requires_grad]
    was_training = encoder.training
    encoder.eval()  # a training-mode trace would update BatchNorm running statistics
    try:
        first = named[0][1]
        x = torch.zeros(1, in_channels, TRACE_SIZE, TRACE_SIZE, device=first.device, dtype=first.dtype)
        with torch.enable_grad():
            features = encoder(x)
            stages, seen = [], set()
            for feature in features:
                if not feature.requires_grad:
                    continue
                grads = torch.autograd.grad(feature.sum(), [p for _, p in named], allow_unused=True, retain_graph=True)
                new = [name for (name, _), g in zip(named, grads) if g is not None and name not in seen]
                if new:
                    stages.append(new)
                    seen.update(new)
    finally:
        encoder.train(was_training)
    return stages


def _stay_in_eval(module: nn.Module, args) -> None:
    module.train(False)


def freeze_encoder_stages(encoder: nn.Module, n_stages: int, in_channels: int) -> list[list[str]]:
    """Freeze the first ``n_stages`` stages of ``encoder``; returns the frozen parameter names per stage.

    Raises:
        ConfigError: when the encoder has fewer than ``n_stages`` stages.
    """
    stages = encoder_stages(encoder, in_channels)
    if not 0 <= n_stages <= len(stages):
        raise ConfigError(f"freeze_encoder_stages={n_stages}, but this encoder has {len(stages)} stages")
    frozen = {name for stage in stages[:n_stages] for name in stage}
    for name, param in encoder.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    for module in encoder.modules():
        params = list(module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and params and not any(p.requires_grad for p in params):
            module.eval()
            module.register_forward_pre_hook(_stay_in_eval)
    return stages[:n_stages]
