"""Driver for tests/infer/test_bounded_failure.py: inference with a model that kills its worker on one case.

Run as ``python poison_run.py MODEL MANIFEST OUT``; prints ``run.json``. The model is registered in
every Ray worker through ``worker_process_setup_hook``, so the run needs a Ray instance of its own.
"""

from __future__ import annotations

import json
import os
import sys

import torch
from torch import nn

#: Width of the poisoned case's image; every other case is wider.
EXIT_WIDTH = 48


class Poison(nn.Module):
    """A 1x1 convolution that ends its process on a batch holding an ``EXIT_WIDTH`` image."""

    def __init__(self, in_channels: int, classes: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == EXIT_WIDTH:
            os._exit(1)  # what a segfault in native code looks like to Ray
        return self.conv(x)


def register() -> None:
    from raysegment.models import MODELS

    if "poison" not in MODELS:
        MODELS.add("poison", Poison)


if __name__ == "__main__":
    import ray

    from raysegment.infer import InferConfig, run_inference
    from raysegment.runtime import ray_init_kwargs

    register()
    kwargs = ray_init_kwargs(num_cpus=2)
    ray.init(**{**kwargs, "runtime_env": {**(kwargs["runtime_env"] or {}), "worker_process_setup_hook": register}})
    model, manifest, out = sys.argv[1:4]
    # One predictor: each process Ray starts costs seconds, and the poisoned case makes it start several.
    config = InferConfig(model=model, manifest=manifest, out=out, batch_size=4, workers=1, cpus_per_worker=1, case_retries=1)
    print(json.dumps(run_inference(config).run))
