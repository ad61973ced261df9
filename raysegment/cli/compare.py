"""``raysegment compare``: models side by side from train runs, tune experiments, evaluations and model folders."""

from __future__ import annotations

from typing import Annotated

import typer

from raysegment.cli._console import console, table

Opt = typer.Option


def compare(
    sources: Annotated[list[str], typer.Argument(help="Train runs, tune experiments, evaluate outputs, model folders or a run's checkpoints/epoch_NNNN.")],
    out: Annotated[str, Opt("--out", "-o", help="Folder for comparison.parquet/.csv/.png, curves.png and report.md.")],
) -> None:
    """Compare models: one table of metrics (train/val/test), a bar chart, their training curves overlaid
    and a Markdown report with overlays."""
    from raysegment.compare import compare as run_compare
    from raysegment.compare.report import chart_split

    result = run_compare(sources, out)
    # The full table (every split and metric) is in the files; the console gets what fits a terminal.
    split = chart_split(result.table)
    columns = [c for c in ("kind", "model", f"{split}_dice", f"{split}_hd95") if c in result.table]
    shown = result.table[columns].reset_index()
    console.print(table("models", shown.columns, shown.itertuples(index=False)))
    if "curves" in result.figures:
        console.print(f"training curves: {result.figures['curves']}", highlight=False, soft_wrap=True)
    console.print(f"report: {result.report_uri}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
