"""A job asking for more than the local Ray instance has fails at once with one line, rather than waiting forever."""

from __future__ import annotations

import pytest
from fixtures_data import tiny_config

from raysegment.errors import ConfigError
from raysegment.train import train


def test_train_asking_for_gpus_on_a_cpu_machine_fails_before_starting(ray_session, lgg_manifest, tmp_path):
    with pytest.raises(ConfigError, match="--gpus-per-worker 1.*asks for 2 GPU"):
        train(tiny_config(lgg_manifest, tmp_path / "run", **{"scaling.gpus_per_worker": 1}))
