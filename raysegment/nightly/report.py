"""The night report: ``night.json`` for machines, ``report.md`` (with ``report.png``) for people.

It holds counts, throughput, the S3 requests retried and the model version, and the distributions a
reader checks a night by: the segmented volumes per class and, for cases that came with ground
truth, their Dice. Case ids appear only in the error list, as in ``errors.parquet``; no header of
any scan is copied.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from raysegment import storage

_SHOWN_ERRORS = 50


def distribution(values: pd.Series) -> dict[str, float] | None:
    """n, mean, and the 5/25/50/75/95th percentiles of the finite values; None when there are none."""
    values = pd.to_numeric(values, errors="coerce").dropna().to_numpy(float)
    if not len(values):
        return None
    q = np.percentile(values, [5, 25, 50, 75, 95])
    return {"n": int(len(values)), "mean": round(float(values.mean()), 4),
            **{f"p{p}": round(float(v), 4) for p, v in zip((5, 25, 50, 75, 95), q)}}


def write_report(folder: str, summary: dict[str, Any], metrics: pd.DataFrame, errors: pd.DataFrame) -> None:
    """Add the distributions to ``summary`` and write ``night.json``, ``report.md`` and, for a night with cases, ``report.png``."""
    from raysegment.plots import night_distributions

    per_class = {}
    for name, part in (metrics.groupby("class") if len(metrics) else []):
        per_class[name] = {"foreground_ml": distribution(part["foreground_ml"]),
                           "dice": distribution(part["dice"]) if "dice" in part else None}
    summary["distributions"] = per_class
    figure = None
    if per_class:
        figure = night_distributions(metrics, storage.join(folder, "report.png"))
    storage.write_bytes(storage.join(folder, "night.json"), (json.dumps(summary, indent=2) + "\n").encode())
    storage.write_bytes(storage.join(folder, "report.md"), _markdown(summary, errors, figure is not None).encode())


def _markdown(summary: dict[str, Any], errors: pd.DataFrame, with_figure: bool) -> str:
    lines = [f"# raysegment nightly, {summary['date']}", ""]
    if not summary["new"]:
        lines += [f"No new scans: all {summary['found']} cases of `{summary['archive']}` were already processed by model version "
                  f"`{summary['model']['version']}`. Nothing to do, and nothing failed.", ""]
    rows = [("archive", f"`{summary['archive']}` ({summary['kind']})"), ("model", f"`{summary['model']['requested']}`"),
            ("model version", f"`{summary['model']['version']}`"), ("cases in the archive", summary["found"]),
            ("new tonight", summary["new"]), ("done", summary["done"]), ("skipped (done by an earlier attempt)", summary["skipped"]),
            ("failed", summary["failed"]), ("seconds", summary["seconds"]), ("cases/s", summary["cases_per_second"]),
            ("S3 retries (requests sent again after throttling, a 5xx or a dropped connection)", summary["s3_retries"])]
    lines += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    if summary["distributions"]:
        lines += ["## Distributions", "", "| class | figure | n | mean | p5 | p25 | median | p75 | p95 |", "|---|---|---|---|---|---|---|---|---|"]
        for name, figures in summary["distributions"].items():
            for label, key in (("segmented volume (mL)", "foreground_ml"), ("Dice (cases with ground truth)", "dice")):
                d = figures[key]
                if d:
                    lines.append(f"| {name} | {label} | {d['n']} | {d['mean']} | {d['p5']} | {d['p25']} | {d['p50']} | {d['p75']} | {d['p95']} |")
        lines.append("")
    if with_figure:
        lines += ["![distributions](report.png)", ""]
    if len(errors):
        lines += ["## Failed cases", "", "| case | stage | error |", "|---|---|---|"]
        lines += [f"| {e.case_id} | {e.stage} | {str(e.error).replace('|', '/')} |" for e in errors.head(_SHOWN_ERRORS).itertuples()]
        if len(errors) > _SHOWN_ERRORS:
            lines.append(f"\n... and {len(errors) - _SHOWN_ERRORS} more in `errors.parquet`.")
        lines.append("")
    return "\n".join(lines)
