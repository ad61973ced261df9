"""What one compared folder holds, whatever wrote it: a ``train`` run, a ``tune`` experiment, an
``evaluate`` output or a ``model`` (a model folder, or a run's ``checkpoints/epoch_NNNN``).

* train run (``summary.json`` with ``best_model_uri``, ``history.parquet``): train/val metrics of
  the epoch of the model the run stands for (``best/`` or ``last/``, by ``checkpoint.select``),
  epochs, training time and images/s;
* tune experiment (``summary.json`` with ``best_trial``, ``trials.parquet``): the same for the
  best trial's run, whose model is ``EXP/best``;
* evaluate output (``summary.parquet`` + ``case_metrics.parquet``): per-split means of every case
  metric (Dice, IoU, sensitivity, specificity, precision, HD95) and the overlay figures;
* model (``model.json``): the train/val metrics of its epoch that training saved with it.

A train run, a tune experiment (its best trial's run) and a model exported from a run (its
``run_uri``) also name the run's ``history.parquet``, whose curves ``compare`` overlays.

A run or experiment also picks up an evaluation written inside it, at ``evaluation/`` or
``best/evaluation/`` (``raysegment evaluate --model RUN --out RUN/evaluation``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from raysegment import storage
from raysegment.errors import ConfigError

#: Metrics compared, as (column stem, name in training histories, name in evaluation tables). The
#: per-patient Dice and the share of empty cases come first: a per-slice mean alone flatters a model.
METRICS = (
    ("patient_dice", "patient_dice", "patient_dice"),
    ("empty_share", "empty_slices", "empty_share"),
    ("dice", "dice", "dice"),
    ("iou", "iou", "iou"),
    ("sensitivity", "recall", "recall"),
    ("specificity", "specificity", "specificity"),
    ("precision", "precision", "precision"),
    ("accuracy", "accuracy", "accuracy"),
    ("hd95", None, "hd95"),
    ("loss", "loss", "loss"),
)
HISTORY_FILE = "history.parquet"
EVAL_DIRS = ("evaluation", "best/evaluation")


@dataclass
class ModelRecord:
    """One compared model.

    Attributes:
        name: the folder's name (the table's row label).
        kind: ``train``, ``tune``, ``evaluate`` or ``model``.
        metrics: ``<split>_<metric>`` -> value (splits train/val from training, any from evaluation).
        info: model name, parameters, epochs, training time, images/s (whatever is known).
        overlays: overlay figure URIs by ``<split>_<rank>``.
        history: the URI of the training run's ``history.parquet``; empty when there is none.
    """

    name: str
    kind: str
    uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)
    overlays: dict[str, str] = field(default_factory=dict)
    history: str = ""


def _history(run_uri: str | None) -> str:
    """The history of the run at ``run_uri`` if it has one, else ``""``."""
    uri = storage.join(run_uri, HISTORY_FILE) if run_uri else ""
    return uri if uri and storage.exists(uri) else ""


def _json(uri: str) -> dict:
    return json.loads(storage.read_bytes(uri))


def _training_metrics(best: dict) -> dict[str, float]:
    out = {}
    for split in ("train", "val"):
        for stem, train_name, _ in METRICS:
            if train_name and f"{split}_{train_name}" in best:
                out[f"{split}_{stem}"] = float(best[f"{split}_{train_name}"])
    return out


def _model_info(model_uri: str) -> dict[str, object]:
    from raysegment.models import ModelSpec, count_parameters, load_model, read_metadata
    from raysegment.models.ensemble import ENSEMBLE

    if not storage.exists(storage.join(model_uri, "model.json")):
        return {}
    spec = ModelSpec.from_dict(read_metadata(model_uri)["model"])
    if spec.name == ENSEMBLE:  # no architecture of its own: its members, loaded
        model, _ = load_model(model_uri)
        return {"model": f"ensemble of {len(model.members)}", "params": count_parameters(model)}
    encoder = spec.config.get("encoder")
    return {"model": spec.name + (f" ({encoder})" if encoder else ""), "params": count_parameters(spec.build(pretrained=False))}


def _run_info(summary: dict) -> dict[str, object]:
    return {"epochs": summary.get("epochs_run"),
            "train_time_s": summary.get("train_time_s"), "images_per_s": summary.get("images_per_s")}


def _evaluation(uri: str) -> tuple[dict[str, float], dict[str, str]]:
    """Per-split means over cases and classes of an evaluate output, its per-split overview figures, and its overlays."""
    cases = storage.read_table(storage.join(uri, "case_metrics.parquet")).to_pandas()
    overview_uri = storage.join(uri, "overview.json")
    overview = {row["split"]: row for row in _json(overview_uri)} if storage.exists(overview_uri) else {}
    metrics = {}
    for split, part in cases.groupby("split"):
        for stem, _, eval_name in METRICS:
            if eval_name in part:
                metrics[f"{split}_{stem}"] = float(pd.to_numeric(part[eval_name], errors="coerce").mean())
            elif overview.get(split, {}).get(eval_name) is not None:
                metrics[f"{split}_{stem}"] = float(overview[split][eval_name])
    index = storage.join(uri, "overlays", "index.json")
    overlays = _json(index) if storage.exists(index) else {}
    return metrics, overlays


def _model_record(uri: str, name: str) -> ModelRecord:
    """A model folder or a run's ``checkpoints/epoch_NNNN``: the metrics its ``model.json`` carries."""
    from raysegment.models import read_metadata
    from raysegment.train.export import resolve_model

    try:
        model_uri = resolve_model(uri)
    except ConfigError:
        raise ConfigError(f"{uri}: not a train run, tune experiment, evaluate output or model "
                          "(no summary.json, case_metrics.parquet or model.json)") from None
    metadata = read_metadata(model_uri)
    record = ModelRecord(name, "model", uri, _training_metrics(metadata.get("metrics") or {}),
                         {**_model_info(model_uri), "model_epoch": metadata.get("epoch")}, history=_history(metadata.get("run_uri")))
    evaluation = storage.join(model_uri, "evaluation")
    if storage.exists(storage.join(evaluation, "case_metrics.parquet")):
        metrics, record.overlays = _evaluation(evaluation)
        record.metrics.update(metrics)
    return record


def read_record(uri: str) -> ModelRecord:
    """Read one folder; raises ConfigError naming it when it is none of the three kinds."""
    from raysegment.models import read_metadata
    from raysegment.train.export import resolve_model

    uri = storage.normalize(uri)
    name = storage.basename(uri)
    summary_uri = storage.join(uri, "summary.json")
    if storage.exists(storage.join(uri, "case_metrics.parquet")):
        metrics, overlays = _evaluation(uri)
        return ModelRecord(name, "evaluate", uri, metrics, {}, overlays)
    if not storage.exists(summary_uri):
        return _model_record(uri, name)
    summary = _json(summary_uri)
    if "best_trial" in summary:
        run_uri = storage.join(uri, "trials", summary["best_trial"])
        run_summary = _json(storage.join(run_uri, "summary.json")) if storage.exists(storage.join(run_uri, "summary.json")) else {}
        record = ModelRecord(name, "tune", uri, _training_metrics(summary["best"]),
                             {**_run_info(run_summary), "model_epoch": summary["best_epoch"], "trials": summary["trials"]})
        model_uri = summary["best_model_uri"]
        record.history = _history(run_uri)
    elif "best_model_uri" in summary:
        # The model the run stands for (checkpoint.select), with the metrics of its own epoch.
        model_uri = resolve_model(uri)
        metadata = read_metadata(model_uri)
        record = ModelRecord(name, "train", uri, _training_metrics(metadata.get("metrics") or summary["best"]),
                             {**_run_info(summary), "model_epoch": metadata.get("epoch", summary["best_epoch"])}, history=_history(uri))
    else:
        raise ConfigError(f"{summary_uri}: not written by raysegment train or tune")
    record.info = {**_model_info(model_uri), **record.info}
    for folder in EVAL_DIRS:
        evaluation = storage.join(uri, folder)
        if storage.exists(storage.join(evaluation, "case_metrics.parquet")):
            metrics, record.overlays = _evaluation(evaluation)
            record.metrics.update(metrics)
            break
    return record
