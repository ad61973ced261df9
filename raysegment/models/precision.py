"""Mixed precision, one rule for training and inference: which autocast dtype runs where."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager

import torch

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` (``none``, ``bf16``, ``fp16``) on ``device``.

    None means full precision: asked for, or ``fp16`` on CPU, which CPU autocast does not run.
    """
    dtype = _DTYPES.get(amp)
    if dtype is torch.float16 and device.type != "cuda":
        return None
    return dtype


def autocast(amp: str, device: torch.device) -> Callable[[], ContextManager]:
    """A factory of fresh autocast contexts for ``amp`` on ``device`` (no-op contexts in full precision)."""
    dtype = autocast_dtype(amp, device)
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)
