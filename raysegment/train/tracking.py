"""Experiment tracking: MLflow (params, per-epoch metrics, final artifacts) and TensorBoard.

Ray Train V2 has no logger callbacks of its own (the ``MLflowLoggerCallback`` belongs to Tune).
MLflow is driven from the driver: it opens the run (and remembers its id in
``RUN_URI/tracking.json``, so a resumed run logs into the same MLflow run), logs each epoch's
metrics as they are reported (:class:`raysegment.train.progress.LiveMetrics`) and the artifacts at
the end, so only the driver needs the tracking server's settings. TensorBoard event files are
written by rank 0, as Ray's V2 docs suggest for worker-side logging, and copied into
``RUN_URI/tensorboard/`` after every epoch, which works the same for local and ``s3://`` runs.
"""

from __future__ import annotations

import json
import os
import tempfile

from raysegment import storage

TRACKING_FILE = "tracking.json"


def _flatten(data: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return out


def open_mlflow_run(tracking_uri: str, experiment: str, run_uri: str, params: dict) -> str:
    """Start (or find again) the MLflow run of ``run_uri``; returns its id. Params are logged once."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    record = storage.join(run_uri, TRACKING_FILE)
    if storage.exists(record):
        saved = json.loads(storage.read_bytes(record))
        if saved.get("mlflow_uri") == tracking_uri:
            return saved["mlflow_run_id"]
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    run = client.create_run(experiment_id, run_name=storage.basename(run_uri))
    for key, value in _flatten(params).items():
        client.log_param(run.info.run_id, key, value[:6000])
    storage.write_bytes(record, json.dumps({"mlflow_uri": tracking_uri, "mlflow_run_id": run.info.run_id}).encode())
    return run.info.run_id


def mlflow_sink(tracking_uri: str, run_id: str):
    """A metrics sink for :class:`raysegment.train.progress.LiveMetrics`: one MLflow step per epoch."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri)

    def log(metrics: dict) -> None:
        stamp, epoch = int(metrics.get("timestamp_ms", 0)), int(metrics["epoch"])
        client.log_batch(run_id, metrics=[Metric(k, float(v), stamp, epoch) for k, v in _numbers(metrics).items()])

    return log


def _numbers(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and k not in ("epoch", "timestamp_ms")}


def close_mlflow_run(tracking_uri: str, run_id: str, artifacts: list[str]) -> None:
    """Attach local artifact files and mark the run finished."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    for path in artifacts:
        client.log_artifact(run_id, path)
    client.set_terminated(run_id, "FINISHED")


class TensorBoardLogger:
    """Rank 0's per-epoch TensorBoard scalars (``train_loss`` -> tag ``train/loss``), copied to ``run_uri/tensorboard``."""

    def __init__(self, run_uri: str):
        from tensorboardX import SummaryWriter

        self.run_uri = run_uri
        self.local_dir = tempfile.mkdtemp(prefix="raysegment-tb-")
        self.writer = SummaryWriter(self.local_dir)

    def log(self, metrics: dict, epoch: int) -> None:
        for key, value in _numbers(metrics).items():
            self.writer.add_scalar(key.replace("_", "/", 1), value, epoch)
        self.writer.flush()
        self._copy()

    def close(self) -> None:
        # tensorboardX hands events to a writer thread: flush() does not wait for it, close() does,
        # so only the copy after close() surely holds the last epoch.
        self.writer.close()
        self._copy()

    def _copy(self) -> None:
        for name in os.listdir(self.local_dir):
            with open(os.path.join(self.local_dir, name), "rb") as f:
                storage.write_bytes(storage.join(self.run_uri, "tensorboard", name), f.read())
