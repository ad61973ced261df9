"""A killed training worker: the run recovers from its latest checkpoint, or a re-run resumes it."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import ray.train
from fixtures_data import tiny_config

from raysegment.train import apply_overrides, train


def _train_worker_pids(since_ms: int, alive: bool = True) -> set[int]:
    # The state API (ray.util.state.list_actors) needs the dashboard, which the test Ray runs without;
    # the GCS actor table carries the same pids.
    from ray._private.state import actors

    return {
        int(a["Pid"]) for a in actors().values()
        if a["ActorClassName"] == "RayTrainWorker" and a["StartTime"] >= since_ms and (a["State"] == "ALIVE" or not alive)
    }


class WorkerKiller(threading.Thread):
    """Waits until the first checkpoint is registered, then SIGKILLs one training worker process.

    A checkpoint folder appears while it is still being uploaded; it counts once Ray Train's run
    snapshot lists it.
    """

    def __init__(self, run, since_ms: int):
        super().__init__(daemon=True)
        self.snapshot = run / "checkpoints" / "checkpoint_manager_snapshot.json"
        self.since_ms = since_ms
        self.killed: int | None = None
        self.killed_at_ms: int | None = None

    def run(self) -> None:
        deadline = time.time() + 600
        while time.time() < deadline and not self._registered():
            time.sleep(0.1)
        pids = _train_worker_pids(self.since_ms)
        if self._registered() and pids:
            self.killed = max(pids)
            self.killed_at_ms = int(time.time() * 1000)
            os.kill(self.killed, signal.SIGKILL)

    def _registered(self) -> bool:
        try:
            return "epoch_0001" in self.snapshot.read_text()
        except (FileNotFoundError, UnicodeDecodeError):
            return False


def _assert_epochs_continue(history, epochs: int, killed_at_ms: int) -> None:
    assert list(history["epoch"]) == list(range(1, epochs + 1))  # every epoch once, the counter went on
    # Epoch 1 finished before the kill and was not trained again after it.
    assert history.loc[0, "timestamp_ms"] < killed_at_ms < history.loc[epochs - 1, "timestamp_ms"]


@pytest.mark.slow
def test_killed_worker_restarts_from_latest_checkpoint(ray_session, lgg_manifest, tmp_path):
    run = tmp_path / "run"
    started_ms = int(time.time() * 1000)
    killer = WorkerKiller(run, started_ms)
    killer.start()
    config = tiny_config(lgg_manifest, run, **{"optim.epochs": 4, "checkpoint.max_failures": 2})
    result = train(config)
    killer.join(timeout=5)

    assert killer.killed is not None
    _assert_epochs_continue(result.history, 4, killer.killed_at_ms)
    workers = _train_worker_pids(started_ms, alive=False)
    assert killer.killed in workers and len(workers) >= 4  # the 2 first workers, then a new group of 2


@pytest.mark.slow
def test_interrupted_run_resumes_when_run_again(ray_session, lgg_manifest, tmp_path):
    run = tmp_path / "run"
    killer = WorkerKiller(run, int(time.time() * 1000))
    killer.start()
    config = tiny_config(lgg_manifest, run, **{"optim.epochs": 3, "checkpoint.max_failures": 0})
    with pytest.raises(ray.train.TrainingFailedError):
        train(config)
    killer.join(timeout=5)
    assert killer.killed is not None and not (run / "history.parquet").exists()

    result = train(apply_overrides(config, {}))  # the same command again
    _assert_epochs_continue(result.history, 3, killer.killed_at_ms)
