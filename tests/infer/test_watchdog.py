"""The per-case deadline ends a hung Ray worker, and never the driver."""

from __future__ import annotations

import time

import pytest

from raysegment.infer.watchdog import deadline

pytestmark = pytest.mark.slow


def test_a_hung_worker_is_ended_and_the_driver_is_spared(ray_session):
    import ray

    def hang(seconds: float) -> str:  # defined here so that Ray ships it by value: workers cannot import tests
        with deadline(seconds):
            time.sleep(120)
        return "returned"

    with deadline(0.1):
        time.sleep(0.3)  # the driver (or a test calling a stage directly) outlives its deadline
    clock = time.monotonic()
    with pytest.raises(ray.exceptions.WorkerCrashedError):
        ray.get(ray.remote(max_retries=0)(hang).remote(1.0), timeout=100)
    assert time.monotonic() - clock < 100  # not the 120 s the task would sleep
