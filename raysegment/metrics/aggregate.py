"""Summary statistics of per-case metrics, NaN-aware."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from raysegment.metrics.case import CASE_METRICS

STATISTICS = ("mean", "std", "median", "p5", "p25", "p75", "p95", "count", "n_nan")


def _quantile(q: float):
    def stat(values: pd.Series) -> float:
        return values.quantile(q)

    stat.__name__ = f"p{round(q * 100)}"
    return stat


def aggregate(df: pd.DataFrame, by: Sequence[str] = ("class",), metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean, std, median and percentiles of each metric per group.

    NaN values (undefined distances) are left out of every statistic but counted: ``count`` is the
    number of rows in the group and ``n_nan`` how many of them are NaN. ``std`` is the sample
    standard deviation (NaN for a single value).

    Args:
        df: one row per case and class, as built from :func:`~raysegment.metrics.case_metrics`.
        by: grouping columns; empty for one overall group.
        metrics: columns to summarise; default: the :data:`CASE_METRICS` present in ``df``.

    Returns:
        Long format: one row per group and metric, columns ``[*by, "metric", *STATISTICS]``.
    """
    by = list(by or ())
    metrics = [m for m in CASE_METRICS if m in df.columns] if metrics is None else list(metrics)
    missing = [c for c in [*by, *metrics] if c not in df.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the metrics table (has {list(df.columns)})")
    long = df.melt(id_vars=by, value_vars=metrics, var_name="metric", value_name="value")
    long["value"] = long["value"].astype(float)
    long["metric"] = pd.Categorical(long["metric"], categories=metrics, ordered=True)  # keep the caller's order
    stats = long.groupby([*by, "metric"], observed=True, sort=True)["value"].agg(
        mean="mean",
        std="std",
        median="median",
        p5=_quantile(0.05),
        p25=_quantile(0.25),
        p75=_quantile(0.75),
        p95=_quantile(0.95),
        count="size",
        n_nan=lambda values: int(values.isna().sum()),
    )
    stats = stats.reset_index()
    stats["metric"] = stats["metric"].astype(str)
    return stats[[*by, "metric", *STATISTICS]]
