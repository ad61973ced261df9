"""Driver for tests/infer/test_nightly_on_a_cluster.py: nights whose model kills its worker on one case.

Run as ``python poison_run.py CONFIG S3_ENDPOINT NODES`` with ``RAY_ADDRESS`` naming a cluster of
``NODES`` nodes, some perhaps still starting: ``CONFIG`` is a :class:`raysegment.nightly.NightlyConfig`
as JSON. Once the nodes are up it answers ``{"nodes": N}``; each line read from stdin then is the date
of a night to run (``YYYY-MM-DD``), and each answer a line ``NIGHT {...}`` on stdout: the night's
counts and errors, or ``raised``, what the night raised. One process runs every night, so the
cluster's workers start once.

The model is registered in every Ray worker through ``worker_process_setup_hook``, which only a
driver's own ``ray.init`` sets: hence a process of its own, not the test's.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch
from torch import nn

#: Width of the poisoned case's image; every other case is narrower.
EXIT_WIDTH = 48
#: What starts an answer line (Ray may write its own lines to stdout).
ANSWER = "NIGHT "


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


def _night(config, date: str) -> dict:
    from raysegment.nightly import run_night

    try:
        night = run_night(config, date)
    except Exception as exc:  # noqa: BLE001 - the test reads what a night that fails says
        return {"raised": f"{type(exc).__name__}: {exc}"}
    fields = ("found", "new", "done", "skipped", "failed", "exit_code", "model_version")
    return {**{k: getattr(night, k) for k in fields}, "errors": night.errors.to_dict(orient="records")}


if __name__ == "__main__":
    import ray

    from raysegment.nightly import NightlyConfig
    from raysegment.runtime import ray_init_kwargs
    from raysegment.storage_config import configure

    config = NightlyConfig.model_validate_json(sys.argv[1])
    configure(endpoint_url=sys.argv[2])  # as --s3-endpoint does: the workers get it from the driver, not their nodes
    kwargs = ray_init_kwargs()
    ray.init(**{**kwargs, "runtime_env": {**(kwargs["runtime_env"] or {}), "worker_process_setup_hook": register}})
    deadline = time.monotonic() + 200
    while (nodes := sum(node["Alive"] for node in ray.nodes())) < int(sys.argv[3]) and time.monotonic() < deadline:
        time.sleep(0.2)
    print(ANSWER + json.dumps({"nodes": nodes}), flush=True)
    for line in sys.stdin:
        print(ANSWER + json.dumps(_night(config, line.strip()), default=str), flush=True)
