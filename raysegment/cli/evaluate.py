"""``raysegment evaluate``: score a checkpoint (or a training run's best model) on manifest splits, or a
cross-validation folder fold by fold."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from raysegment.cli._console import console, plain_line, print_json, table

Opt = typer.Option


def evaluate(
    model: Annotated[str, Opt("--model", "-m", help="Checkpoint folder, a training run folder (its best/ model), a run's checkpoints/epoch_NNNN, "
                                                    "or a cross-validation folder (train --folds): each fold scored on its held-out patients.")],
    manifest: Annotated[str, Opt(help="Manifest (.parquet, local or s3://).")],
    out: Annotated[str, Opt("--out", "-o", help="Folder for case_metrics.parquet, summary.*, overlays/ (and volume_* for slice datasets).")],
    split: Annotated[Optional[str], Opt(help="Comma-separated splits, e.g. test or train,val,test (default test; "
                                             "with a cross-validation folder, its ensemble on these splits).")] = None,
    threshold: Annotated[Optional[float], Opt(help="Probability above which a pixel is foreground (default: the checkpoint's).")] = None,
    largest_component: Annotated[Optional[bool], Opt("--largest-component/--no-largest-component",
                                                     help="Keep only the largest connected component per case or patient (default: the checkpoint's).")] = None,
    mirror: Annotated[Optional[bool], Opt("--mirror/--no-mirror", help="Average over mirrored slices, 4 passes each (default: the checkpoint's).")] = None,
    workers: Annotated[int, Opt(help="Parallel scoring actors.")] = 1,
    max_cases: Annotated[Optional[int], Opt(help="At most this many cases per split.")] = None,
    address: Annotated[Optional[str], Opt(help="Ray cluster address; default RAY_ADDRESS or a local Ray.")] = None,
    as_json: Annotated[bool, Opt("--json", help="Print the summary table as JSON.")] = False,
) -> None:
    """Per-case metrics at the original resolution beside the model's training loss, summary statistics,
    and overlays of the best, median and worst case and of one without lesion.

    Given a cross-validation folder (raysegment train --folds) and no --split: each fold's model on
    its own held-out patients, pooled over the folds, with per-fold figures.
    """
    from raysegment.evaluate import evaluate as run_evaluate
    from raysegment.train.folds import is_folds_folder

    overrides = {k: v for k, v in {"threshold": threshold, "largest_component": largest_component, "mirror": mirror}.items() if v is not None}
    progress = None
    if not as_json and not console.is_terminal:  # a job's log: plain lines with an ETA, as train, tune and infer print
        from raysegment.progress import CountProgress

        progress = CountProgress("evaluate", "cases", plain_line)
    on_case = None if progress is None else (lambda done, total: progress.update(total=total, done=done))
    if split is None and is_folds_folder(model):
        _cross_validation(model, manifest, out, overrides, workers, max_cases, address, on_case, as_json)
        if progress is not None:
            progress.finish()
        return
    result = run_evaluate(model, manifest, split or "test", out, postprocess=overrides, workers=workers, max_cases=max_cases,
                          address=address, on_case=on_case)
    if progress is not None:
        progress.finish()
    if as_json:
        print_json(result.summary.to_dict(orient="records"))
        return
    console.print(table(f"evaluation of {model}", result.overview.columns, result.overview.itertuples(index=False)))
    shown = ["loss", *(result.reported_metrics or _SHOWN)]  # a seed report's metrics, in its order, when the job names them
    _print_summary(result.summary, "per case", shown)
    console.print(f"per-case metrics: {result.out}/case_metrics.parquet", highlight=False)
    if len(result.volumes):
        _print_summary(result.volume_summary, "per patient volume (slices stacked)", shown)
        console.print(f"per-volume metrics: {result.out}/volume_metrics.parquet", highlight=False)
    for name, uri in result.figures.items():
        console.print(f"figure {name}: {uri}", highlight=False)


def _cross_validation(folds: str, manifest: str, out: str, overrides: dict, workers: int, max_cases: Optional[int],
                      address: Optional[str], on_case, as_json: bool) -> None:
    from raysegment.crossval import evaluate_folds

    result = evaluate_folds(folds, manifest, out, postprocess=overrides, workers=workers, max_cases=max_cases, address=address,
                            on_case=on_case)
    if as_json:
        print_json(result.summary.to_dict(orient="records"))
        return
    console.print(table(f"cross-validation of {folds} (each fold's model on its held-out patients; cv: all folds pooled)",
                        result.overview.columns, result.overview.itertuples(index=False)))
    _print_summary(result.summary, "per case, all folds pooled")
    console.print(f"per-case metrics (all folds, with their fold): {result.out}/case_metrics.parquet; per fold: "
                  f"{result.out}/fold_summary.parquet and {result.out}/fold_K/", highlight=False)
    if len(result.volumes):
        _print_summary(result.volume_summary, "per patient volume (slices stacked), all folds pooled")
        console.print(f"per-volume metrics: {result.out}/volume_metrics.parquet", highlight=False)


_SHOWN = ("dice", "iou", "precision", "recall", "hd95")


def _print_summary(summary, title: str, metrics=("loss", *_SHOWN)) -> None:
    shown = summary[summary["metric"].isin(metrics)].copy()
    shown["order"] = shown["metric"].map({m: i for i, m in enumerate(metrics)})
    rows = shown.sort_values(["split", "class", "order"], kind="stable")[["split", "class", "metric", "mean", "std", "median"]].itertuples(index=False)
    console.print(table(title, ["split", "class", "metric", "mean", "std", "median"], rows))


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
