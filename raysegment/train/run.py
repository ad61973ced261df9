"""``train(config) -> RunResult``: one Ray Train run, and the reports it leaves in ``RUN_URI``.

The run folder holds ``config.yaml`` (resolved), ``checkpoints/`` (Ray Train's experiment folder:
one ``epoch_NNNN`` checkpoint per kept epoch and the run snapshot), ``best/`` (the model of the
best epoch by ``checkpoint.monitor``, in the :mod:`raysegment.models.checkpoint` format), ``last/``
(the final weights), ``model_template.json`` (see :mod:`raysegment.train.export`), ``history.parquet``, ``train_curves.png``,
``summary.json`` and, when asked, ``tensorboard/``.

Running ``train`` again with the same ``out`` resumes: Ray Train V2 finds the snapshot under
``RUN_URI/checkpoints`` (same ``RunConfig(name, storage_path)``) and hands the latest checkpoint to
``ray.train.get_checkpoint()``; a finished run then trains no further and its reports are rewritten.
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field

import pandas as pd

from raysegment import storage
from raysegment.errors import ConfigError
from raysegment.models.checkpoint import ModelSpec
from raysegment.preprocess import PreprocessConfig
from raysegment.runtime import init_ray, local_resources
from raysegment.sizing import size_train
from raysegment.train.config import TrainConfig
from raysegment.train.data import augmented_dataset, build_dataset, input_channels, load_splits, patch_dataset
from raysegment.train.export import export_epoch, kept_epochs, write_template
from raysegment.train.loop import train_func_per_worker
from raysegment.train.progress import LiveMetrics, console_sink
from raysegment.train.state import read_history

EXPERIMENT_DIR = "checkpoints"


@dataclass
class RunResult:
    """What a finished run produced.

    Attributes:
        run_uri: the run folder.
        best_model_uri: ``run_uri/best``, loadable with ``load_model``.
        model_uri: the model the run stands for (``checkpoint.select``: ``best/`` or ``last/``); what
            ``evaluate``, ``export`` and ``infer`` load when given the run folder.
        history: one row per epoch.
        summary: the content of ``summary.json``.
    """

    run_uri: str
    best_model_uri: str
    model_uri: str
    history: pd.DataFrame
    summary: dict = field(default_factory=dict)

    @property
    def best_metrics(self) -> dict:
        return self.summary["best"]


def train(config: TrainConfig, address: str | None = None, console=None, callbacks: list | None = None) -> RunResult:
    """Train ``config`` on Ray (local or ``address``) and write the run's reports.

    Args:
        config: a validated job; ``config.out`` and ``config.data.manifest`` must be set.
        console: a rich Console for per-epoch progress lines, or None.
        callbacks: extra Ray Train ``UserCallback``s for the run (``raysegment.tune`` passes
            Tune's ``TuneReportCallback`` so each epoch's metrics reach the trial).
    """
    import ray.data
    import ray.train
    from ray.train.torch import TorchTrainer

    if not config.out or not config.data.manifest:
        raise ConfigError("train: both an output folder (--out) and a manifest (--manifest) are needed")
    started = time.perf_counter()
    init_ray(address)
    sizing = size_train(local_resources(address), config.scaling.workers, config.scaling.cpus_per_worker, config.scaling.gpus_per_worker)
    if console is not None:
        console.print(sizing.line(), markup=False, highlight=False, soft_wrap=True)
    config = config.model_copy(update={"scaling": config.scaling.model_copy(update={"cpus_per_worker": sizing.cpus_per_worker})})
    scaling = config.scaling
    # Ray Data's progress logs would drown the per-epoch lines.
    ray.data.DataContext.get_current().enable_progress_bars = False
    run_uri = storage.normalize(config.out)
    config.save(storage.join(run_uri, "config.yaml"))
    preprocess = config.data.preprocess
    # Settled here and saved with the model: the output count depends on it.
    preprocess = preprocess.model_copy(update={"label_mode": "exclusive" if preprocess.exclusive else "regions"})
    df, splits = load_splits(config.data.manifest, preprocess, [config.data.train_split, config.data.val_split],
                             seed=config.optim.seed, max_cases=config.data.max_cases, validation=(config.data.val_split,))
    channels = input_channels(df, preprocess, config.data.manifest)
    preprocess, model_config = plan_3d(preprocess, config.model.name, config.model.config, splits[config.data.train_split].rows, console)
    if preprocess.dims == 3:  # the workers and the saved config.yaml get the planned patch, spacing and model
        config = config.model_copy(update={"data": config.data.model_copy(update={"preprocess": preprocess}),
                                           "model": config.model.model_copy(update={"config": model_config})})
    spec = ModelSpec(config.model.name, in_channels=len(channels), classes=preprocess.out_channels, config=model_config)
    spec.build(pretrained=False)  # a bad option fails here, in one line, not inside every worker
    write_template(run_uri, spec.to_dict(), preprocess=preprocess.model_dump(mode="json"),
                   postprocess=config.postprocess.model_dump(mode="json"), class_names=preprocess.class_names, channels=channels,
                   loss=config.optim.model_dump(mode="json")["loss"],  # evaluate reports the loss the model was trained on
                   **({"reported_metrics": config.metrics} if config.metrics else {}))  # and the metrics its experiment is judged by
    datasets = {
        "train": build_dataset(splits[config.data.train_split].rows, preprocess, config.optim.seed, config.data.cache,
                               volumes=splits[config.data.train_split].volumes),
        # Every slice of every validation patient, whatever training samples: patients are scored whole.
        "val": build_dataset(splits[config.data.val_split].rows, preprocess.model_copy(update={"slice_selection": "all"}),
                             config.optim.seed, config.data.cache),
    }
    if preprocess.dims == 3:
        # Patches are drawn and augmented in Ray Data tasks, anew each epoch: their count is known, not stored.
        train_examples = splits[config.data.train_split].cases * config.data.patches_per_volume
        datasets["train"] = patch_dataset(datasets["train"], preprocess.patch_size, config.data.patches_per_volume,
                                          config.data.augment.model_dump())
    else:
        train_examples = datasets["train"].count() if config.data.cache else None
        datasets["train"] = augmented_dataset(datasets["train"], config.data.augment.model_dump())
    # One-cycle plans its whole schedule up front; a streamed (uncached) dataset has no count, so it gets 1.
    per_worker = (train_examples or 0) // scaling.workers
    drop_last = per_worker >= config.optim.batch_size
    steps = max(1, per_worker // config.optim.batch_size if drop_last else math.ceil(per_worker / config.optim.batch_size))

    sinks, mlflow_run_id = [], None
    if console is not None and config.tracking.progress:
        sinks.append(console_sink(console, config.optim.epochs))
    if config.tracking.mlflow_uri:
        from raysegment.train.tracking import mlflow_sink, open_mlflow_run

        mlflow_run_id = open_mlflow_run(config.tracking.mlflow_uri, config.tracking.experiment, run_uri,
                                        config.model_dump(mode="json"))
        sinks.append(mlflow_sink(config.tracking.mlflow_uri, mlflow_run_id))
    fs, fs_path = storage.filesystem(run_uri)
    with LiveMetrics(sinks) as live:
        trainer = TorchTrainer(
            train_func_per_worker,
            train_loop_config={"job": config.model_dump(mode="json"), "spec": spec.to_dict(), "steps_per_epoch": steps, "drop_last": drop_last,
                               "run_uri": run_uri, "class_names": preprocess.class_names,
                               "val_volumes": datasets_volumes(splits[config.data.val_split].rows)},
            scaling_config=ray.train.ScalingConfig(
                num_workers=scaling.workers,
                use_gpu=scaling.gpus_per_worker > 0,
                resources_per_worker={"CPU": scaling.cpus_per_worker, **({"GPU": scaling.gpus_per_worker} if scaling.gpus_per_worker else {})},
            ),
            run_config=ray.train.RunConfig(
                name=EXPERIMENT_DIR,
                storage_path=fs_path,
                storage_filesystem=fs,
                checkpoint_config=ray.train.CheckpointConfig(
                    num_to_keep=config.checkpoint.num_to_keep,
                    checkpoint_score_attribute=config.checkpoint.monitor,
                    checkpoint_score_order="max",
                ),
                failure_config=ray.train.FailureConfig(max_failures=config.checkpoint.max_failures),
                callbacks=live.callbacks + list(callbacks or []),
            ),
            datasets=datasets,
            # Validation is not split: every worker sees all of it and scores its own batches.
            dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        )
        result = trainer.fit()
    return write_reports(config, spec, result, run_uri, time.perf_counter() - started, mlflow_run_id)


def plan_3d(preprocess: PreprocessConfig, model: str, model_config: dict, rows: pd.DataFrame, console=None) -> tuple[PreprocessConfig, dict]:
    """A 3D job's spacing and patch size, planned from its training volumes where the job leaves them out
    (:mod:`raysegment.planning`), and the model options that take them (``dynunet``'s)."""
    from raysegment.models import model_options
    from raysegment.planning import plan_volumes

    if preprocess.dims != 3:
        return preprocess, model_config
    if preprocess.spacing is None or preprocess.patch_size is None:
        plan = plan_volumes(rows, preprocess.orientation, spacing=preprocess.spacing)
        preprocess = preprocess.model_copy(update={"spacing": preprocess.spacing or list(plan.spacing),
                                                   "patch_size": preprocess.patch_size or list(plan.patch_size)})
        if console is not None:
            console.print(f"3D plan from {plan.cases} training volumes: median shape {list(plan.median_shape)}, spacing "
                          f"{[round(s, 3) for s in preprocess.spacing]} mm, patch {preprocess.patch_size}", highlight=False)
    options = model_options(model)
    filled = {key: value for key, value in (("patch_size", preprocess.patch_size), ("spacing", preprocess.spacing))
              if key in options and key not in model_config}
    return preprocess, {**model_config, **filled}


def datasets_volumes(rows: pd.DataFrame) -> int:
    """Patient volumes among ``rows`` (:func:`raysegment.train.data.volume_key`), as ``build_dataset`` numbers them."""
    from raysegment.train.data import plain_row, volume_key

    return len({volume_key(plain_row(r)) for r in rows[["case_id", "volume_id"]].to_dict(orient="records")})


def write_reports(config: TrainConfig, spec: ModelSpec, result, run_uri: str, wall_s: float, mlflow_run_id: str | None) -> RunResult:
    """Export the best and the last model and write history, curves and summary from the run's checkpoints."""
    from raysegment import plots

    if result.checkpoint is None:
        raise ConfigError(f"{run_uri}: the run reported no checkpoint")
    with result.checkpoint.as_directory() as directory:
        history = pd.DataFrame(read_history(directory))
    monitor = config.checkpoint.monitor
    # The best epoch among those Ray Train kept: with tied scores it may have kept a later one.
    kept = history[history["epoch"].isin(kept_epochs(run_uri))]
    best_row = kept.loc[kept[monitor].idxmax()].to_dict()
    last_row = history.iloc[-1].to_dict()
    best_uri, last_uri = storage.join(run_uri, "best"), storage.join(run_uri, "last")
    export_epoch(run_uri, int(best_row["epoch"]), best_uri, metrics=best_row)
    export_epoch(run_uri, int(last_row["epoch"]), last_uri, metrics=last_row)
    best_metrics = {k: float(v) for k, v in best_row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    summary = {
        "run_uri": run_uri,
        "best_model_uri": best_uri,
        "last_model_uri": last_uri,
        "selected": config.checkpoint.select,
        "model_uri": storage.join(run_uri, config.checkpoint.select),
        "monitor": monitor,
        "best_epoch": int(best_row["epoch"]),
        "best": best_metrics,
        "epochs_run": int(history["epoch"].max()),
        "stopped_early": bool(int(history["epoch"].max()) < config.optim.epochs),
        "wall_time_s": wall_s,
        "train_time_s": float(history["train_time_s"].sum()),
        "images_per_s": float(history["images_per_s"].mean()),
        "data_wait_share": float(history["data_wait_share"].mean()) if "data_wait_share" in history else None,
        "model": spec.to_dict(),
        "hardware": hardware(config.scaling.workers, config.scaling.gpus_per_worker),
    }
    with tempfile.TemporaryDirectory() as local:
        files = ("history.parquet", "train_curves.png", "summary.json", "config.yaml")
        history.to_parquet(os.path.join(local, "history.parquet"), index=False)
        plots.training_curves(history, os.path.join(local, "train_curves.png"))
        with open(os.path.join(local, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        with open(os.path.join(local, "config.yaml"), "w") as f:
            f.write(config.to_yaml())
        for name in files:
            with open(os.path.join(local, name), "rb") as f:
                storage.write_bytes(storage.join(run_uri, name), f.read())
        if mlflow_run_id:
            from raysegment.train.tracking import close_mlflow_run

            close_mlflow_run(config.tracking.mlflow_uri, mlflow_run_id, [os.path.join(local, n) for n in files])
    return RunResult(run_uri=run_uri, best_model_uri=best_uri, model_uri=summary["model_uri"], history=history, summary=summary)


def hardware(workers: int, gpus_per_worker: float) -> dict:
    """Versions and machine names for the summary (taken on the driver; GPU name when visible here)."""
    import ray
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "cpu": cpu,
        "gpus": gpus,
        "workers": workers,
        "gpus_per_worker": gpus_per_worker,
        "cluster_resources": {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")},
        "ray": ray.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
