"""From Tune's results to the experiment's reports: trials table, per-epoch history, best model.

* ``trials.parquet``: one row per trial: status, epochs run, final and best metrics, wall time,
  Tune's start-up overhead, and the searched values (``config.<key>`` columns).
* ``history.parquet``: one row per trial and epoch, every reported metric.
* ``best/``: the best epoch of the best trial in the :mod:`raysegment.models.checkpoint` format.
* ``best_config.yaml``: that trial's training job, usable as ``raysegment train --config``.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pyarrow as pa

from raysegment import storage
from raysegment.errors import ConfigError
from raysegment.train.config import load_config
from raysegment.train.export import checkpoint_uri
from raysegment.tune.trial import trial_run_uri

#: Tune's bookkeeping columns kept in the history (the rest are the trial's own metrics).
TUNE_COLUMNS = ("training_iteration", "time_this_iter_s", "time_total_s")
METRIC_PREFIXES = ("train_", "val_", "best_")
FINAL_METRICS = ("train_loss", "train_dice", "val_loss", "val_dice", "val_patient_dice", "val_empty_slices", "val_iou", "val_precision", "val_recall")


def _param_value(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def collect(results, exp_uri: str, metric: str, mode: str, encoded: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(trials, history)`` tables from a Tune ``ResultGrid``.

    A trial is ``completed`` when its training run wrote its summary (it ran all its epochs, or
    stopped on its own patience), ``stopped`` when Tune ended it earlier (ASHA, or an interrupted
    search), ``errored`` when it failed, ``pending`` when an interrupted search never started it.
    """
    from raysegment.tune.space import decode_params

    trials, histories = [], []
    for result in results:
        name = storage.basename(result.path)
        run_uri = trial_run_uri(exp_uri, name)
        params = decode_params(result.config or {}, encoded)
        frame = trial_history(result.metrics_dataframe, run_uri)
        row: dict[str, Any] = {"trial": name, "run_uri": run_uri}
        if len(frame):
            history = frame.copy()
            history.insert(0, "trial", name)
            histories.append(history)
            best_index = frame[metric].idxmax() if mode == "max" else frame[metric].idxmin()
            last = frame.iloc[-1]
            row.update(
                epochs_run=int(last["epoch"]),
                best_epoch=int(frame.loc[best_index, "epoch"]),
                **{f"best_{metric}": float(frame.loc[best_index, metric])},
                **{f"final_{m}": float(last[m]) for m in FINAL_METRICS if m in frame},
                wall_time_s=float(frame["time_this_iter_s"].sum()) if frame["time_this_iter_s"].notna().all() else None,
                # Trial start to its first reported epoch, and what of it was not that epoch's own
                # training and validation: the start-up of Tune's trial, Ray Train and the data.
                first_report_s=float(frame["time_this_iter_s"].iloc[0]),
                startup_overhead_s=float(frame["time_this_iter_s"].iloc[0] - frame["epoch_time_s"].iloc[0]),
                mean_epoch_s=float(frame["epoch_time_s"].mean()),
            )
        else:
            row.update(epochs_run=0)
        row["status"] = ("errored" if result.error is not None else
                         "completed" if storage.exists(storage.join(run_uri, "summary.json")) else
                         "stopped" if row["epochs_run"] else "pending")
        row["error"] = None if result.error is None else " ".join(str(result.error).split())[:500]
        row.update({f"config.{k}": _param_value(v) for k, v in params.items()})
        row["params_json"] = json.dumps(params, sort_keys=True, default=str)
        trials.append(row)
    if not trials:
        raise ConfigError(f"{exp_uri}: the search produced no trials")
    table = pd.DataFrame(trials).sort_values("trial", ignore_index=True)
    table["rank"] = table[f"best_{metric}"].rank(ascending=mode == "min", method="first") if f"best_{metric}" in table else None
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame(columns=["trial", "epoch"])
    return table, history


def write_parquet(df: pd.DataFrame, uri: str) -> None:
    storage.write_table(uri, pa.Table.from_pandas(df, preserve_index=False))


def trial_history(frame: pd.DataFrame | None, run_uri: str) -> pd.DataFrame:
    """One row per epoch of a trial: what Tune received, completed by the run's ``history.parquet``.

    A trial that Tune restarts after its training run had finished reports no epoch again (Ray
    Train resumes it as finished), so its epochs come from the run folder.
    """
    parts = []
    if frame is not None and len(frame) and "epoch" in frame:
        own = [c for c in frame.columns if c in ("epoch", "lr", "images_per_s", "epoch_time_s") or c.startswith(METRIC_PREFIXES)]
        parts.append(frame[[*own, *[c for c in TUNE_COLUMNS if c in frame]]])
    history_uri = storage.join(run_uri, "history.parquet")
    if storage.exists(history_uri):
        parts.append(storage.read_table(history_uri).to_pandas())
    if not parts:
        return pd.DataFrame(columns=["epoch", *TUNE_COLUMNS])
    # Tune's rows come first and carry the timings; the run's history fills the epochs Tune lacks.
    history = pd.concat(parts, ignore_index=True).drop_duplicates("epoch", keep="first").sort_values("epoch", ignore_index=True)
    return history.reindex(columns=[*dict.fromkeys([*parts[0].columns, *TUNE_COLUMNS])])


def best_epoch(history: pd.DataFrame, exp_uri: str, metric: str, mode: str) -> dict[str, Any]:
    """The best (trial, epoch) whose checkpoint was kept (Ray Train keeps the best and the latest)."""
    from raysegment.train.state import STATE_FILE

    ranked = history.dropna(subset=[metric]).sort_values(metric, ascending=mode == "min", kind="stable")
    for row in ranked.to_dict(orient="records"):
        uri = checkpoint_uri(trial_run_uri(exp_uri, row["trial"]), int(row["epoch"]))
        if storage.exists(storage.join(uri, STATE_FILE)):
            return {**row, "checkpoint_uri": uri}
    raise ConfigError(f"{exp_uri}: no checkpoint of any trial's reported epochs is left in storage")


def export_best(exp_uri: str, best: dict[str, Any]) -> tuple[str, str]:
    """Write ``best/`` (model) and ``best_config.yaml`` for the best epoch; returns their URIs."""
    from raysegment.train.export import export_epoch

    run_uri = trial_run_uri(exp_uri, best["trial"])
    best_uri = export_epoch(run_uri, int(best["epoch"]), storage.join(exp_uri, "best"), metrics=best, trial=best["trial"])
    config_uri = storage.join(exp_uri, "best_config.yaml")
    load_config(storage.join(run_uri, "config.yaml")).model_copy(update={"out": None}).save(config_uri)
    return best_uri, config_uri
