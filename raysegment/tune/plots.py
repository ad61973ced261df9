"""Figures of a search: the metric of every trial over epochs, and the metric against each parameter."""

from __future__ import annotations

import numpy as np
import pandas as pd

from raysegment.plots import _pyplot, _save


def trial_curves(history: pd.DataFrame, trials: pd.DataFrame, metric: str, uri: str) -> str:
    """One line per trial of ``metric`` over epochs; a cross marks where the scheduler stopped a trial.

    Args:
        history: ``trial, epoch, <metric>`` rows.
        trials: ``trial, status`` rows (``stopped`` trials get the cross).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    status = dict(zip(trials["trial"], trials["status"]))
    for k, (name, rows) in enumerate(history.groupby("trial", sort=True)):
        rows = rows.sort_values("epoch")
        color = f"C{k % 10}"
        ax.plot(rows["epoch"], rows[metric], "o-", color=color, markersize=3, label=name)
        if status.get(name) == "stopped":
            ax.plot(rows["epoch"].iloc[-1], rows[metric].iloc[-1], "x", color=color, markersize=10, mew=2)
    ax.plot([], [], "kx", markersize=8, mew=2, label="stopped early")
    ax.set(title=f"{metric} per trial", xlabel="epoch", ylabel=metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="best")
    return _save(fig, uri)


def metric_vs_params(trials: pd.DataFrame, keys: list[str], metric: str, uri: str, log_keys: list[str] = ()) -> str:
    """One panel per searched parameter: each trial's best ``metric`` against its value.

    Numeric parameters are scattered on a (log for ``log_keys``) axis, the others by category.
    """
    plt = _pyplot()
    keys = keys or ["trial"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.6), squeeze=False)
    column = f"best_{metric}"
    trials = trials.dropna(subset=[column])  # trials that never reported
    for ax, key in zip(axes[0], keys):
        values = trials[f"config.{key}"] if f"config.{key}" in trials else trials["trial"]
        y = trials[column]
        numeric = pd.api.types.is_numeric_dtype(values) and values.nunique() > 1
        if numeric:
            ax.scatter(values, y)
            if key in log_keys:
                ax.set_xscale("log")
        else:
            text = values.map(str)
            labels = sorted(text.unique())
            x = text.map({v: i for i, v in enumerate(labels)}).to_numpy(dtype=float)
            ax.scatter(x + np.linspace(-0.1, 0.1, len(x)), y)
            ax.set_xticks(range(len(labels)), [v if len(v) <= 16 else v[:13] + "..." for v in labels], rotation=30, ha="right")
        ax.set(xlabel=key, ylabel=column)
        ax.grid(alpha=0.3)
    fig.suptitle(f"best {metric} of each trial against the searched values")
    return _save(fig, uri)
