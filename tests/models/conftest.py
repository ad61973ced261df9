"""Tiny configurations per model family, so every registered model builds and runs fast on a CPU."""

from __future__ import annotations

import pytest

TINY = {
    "dynunet": {"patch_size": (16, 16, 16), "base_channels": 4, "max_channels": 8},
    "unet": {"base_channels": 4, "depth": 2},
    "unetpp": {"base_channels": 4, "depth": 2},
    "transunet": {
        "hidden_size": 32,
        "num_layers": 2,
        "num_heads": 2,
        "img_size": 64,
        "cnn_layers": (1, 1, 1),
        "cnn_widths": (16, 32, 64),
        "stem_channels": 8,
        "norm_groups": 4,
        "head_channels": 32,
        "decoder_channels": (32, 16, 8, 8),
    },
}
# smp architectures share one tiny timm encoder (timm's own test network); no download
TINY_SMP = {"encoder": "tu-test_resnet", "encoder_weights": None}


def tiny_config(name: str) -> dict:
    if name.startswith("smp-"):
        return dict(TINY_SMP)
    return dict(TINY[name])


@pytest.fixture
def tiny():
    """``tiny(name) -> cfg``: the tiny configuration of a registered model."""
    return tiny_config
