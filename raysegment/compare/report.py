"""``compare(uris, out) -> CompareResult``: one table of models by metrics, a bar chart and a Markdown report.

``OUT`` receives ``comparison.parquet`` and ``comparison.csv`` (one row per model), ``comparison.png``
(the overlap scores of each model on its most held-out split: test, else val, else train),
``curves.png`` (the training curves of the models that have a run's history, overlaid: one panel
per metric and split, one line per model), ``overlays/`` (copies of each model's evaluation
overlays) and ``report.md`` linking them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from raysegment import storage
from raysegment.compare.sources import METRICS, ModelRecord, read_record
from raysegment.errors import ConfigError

SPLIT_ORDER = ("train", "val", "test")
INFO_COLUMNS = ("kind", "model", "params", "epochs", "model_epoch", "train_time_s", "images_per_s")
CHART_METRICS = ("dice", "iou", "sensitivity", "specificity", "precision")


@dataclass
class CompareResult:
    out: str
    table: pd.DataFrame
    records: list[ModelRecord]
    figures: dict[str, str] = field(default_factory=dict)
    report_uri: str = ""
    histories: dict[str, pd.DataFrame] = field(default_factory=dict)


def _split_rank(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def build_table(records: list[ModelRecord]) -> pd.DataFrame:
    """Rows = models (unique names), columns = info then ``<split>_<metric>`` by split and metric order."""
    names = [r.name for r in records]
    rows = []
    for record in records:
        name = record.name if names.count(record.name) == 1 else f"{record.name} ({storage.basename(storage.parent(record.uri))})"
        rows.append({"name": name, "kind": record.kind, **record.info, **record.metrics})
    table = pd.DataFrame(rows).set_index("name")
    splits = sorted({c.split("_", 1)[0] for r in records for c in r.metrics}, key=_split_rank)
    metric_columns = [f"{s}_{m}" for s in splits for m, _, _ in METRICS if f"{s}_{m}" in table]
    info = [c for c in INFO_COLUMNS if c in table]
    return table[info + metric_columns]


def chart_split(table: pd.DataFrame) -> str:
    """The most held-out split with scores (test, then val, then train)."""
    for split in reversed(SPLIT_ORDER):
        if f"{split}_dice" in table and table[f"{split}_dice"].notna().any():
            return split
    raise ConfigError("compare: no model has Dice scores")


def bar_chart(table: pd.DataFrame, uri: str) -> str:
    from raysegment.plots import _pyplot, _save

    plt = _pyplot()
    split = chart_split(table)
    metrics = [m for m in CHART_METRICS if f"{split}_{m}" in table]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(metrics) * max(1, len(table)) / 2), 4))
    width = 0.8 / len(table)
    x = np.arange(len(metrics))
    for k, (name, row) in enumerate(table.iterrows()):
        values = [row.get(f"{split}_{m}", np.nan) for m in metrics]
        bars = ax.bar(x + k * width - 0.4 + width / 2, values, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, metrics)
    ax.set(ylim=(0, 1.05), title=f"{split} scores", ylabel="mean")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, uri)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def markdown(table: pd.DataFrame, records: list[ModelRecord], overlays: dict[str, list[tuple[str, str]]], curves: bool = False) -> str:
    lines = ["# Model comparison", "", f"{len(table)} models; sources: " + ", ".join(f"`{r.uri}` ({r.kind})" for r in records), ""]
    columns = ["model", *table.columns]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "---|" * len(columns))
    for name, row in table.iterrows():
        lines.append("| " + " | ".join([name, *(_cell(v) for v in row.tolist())]) + " |")
    lines += ["", "![scores](comparison.png)", ""]
    if curves:
        lines += ["![training curves](curves.png)", ""]
    for name, figures in overlays.items():
        lines += [f"## {name}", ""]
        lines += [f"![{key}]({path})" for key, path in figures]
        lines.append("")
    return "\n".join(lines)


def compare(uris: list[str], out: str) -> CompareResult:
    """Compare the models of ``uris`` (train runs, tune experiments, evaluate outputs, models) into ``out``."""
    if not uris:
        raise ConfigError("compare: give at least one run, experiment, evaluation or model folder")
    out = storage.normalize(out)
    records = [read_record(uri) for uri in uris]
    table = build_table(records)
    buffer = io.BytesIO()
    table.reset_index().to_parquet(buffer, index=False)
    storage.write_bytes(storage.join(out, "comparison.parquet"), buffer.getvalue())
    storage.write_bytes(storage.join(out, "comparison.csv"), table.to_csv().encode())
    figures = {"bars": bar_chart(table, storage.join(out, "comparison.png"))}
    histories = {name: storage.read_table(record.history).to_pandas() for name, record in zip(table.index, records) if record.history}
    if histories:
        from raysegment.plots import runs_curves

        figures["curves"] = runs_curves(histories, storage.join(out, "curves.png"))
    overlays: dict[str, list[tuple[str, str]]] = {}
    for name, record in zip(table.index, records):
        for key, source in sorted(record.overlays.items()):
            relative = f"overlays/{name.replace(' ', '_').replace('/', '_')}_{key}.png"
            storage.write_bytes(storage.join(out, relative), storage.read_bytes(source))
            overlays.setdefault(name, []).append((key, relative))
            figures[f"{name}/{key}"] = storage.join(out, relative)
    report_uri = storage.join(out, "report.md")
    storage.write_bytes(report_uri, markdown(table, records, overlays, curves=bool(histories)).encode())
    return CompareResult(out=out, table=table, records=records, figures=figures, report_uri=report_uri, histories=histories)
