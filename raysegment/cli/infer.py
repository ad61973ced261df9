"""``raysegment infer``: segment every case of a manifest with a checkpoint, on Ray Data."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer

from raysegment.cli._console import console, plain_line, print_json, table

_SHOWN_ERRORS = 20


def infer(
    model: Annotated[str | None, typer.Option(help="Checkpoint folder, training run (its best/), a run's checkpoints/epoch_NNNN, or a model repository "
                                                   "(NAME: its production alias, NAME@ALIAS, NAME/versions/ID; local or s3://).")] = None,
    manifest: Annotated[str | None, typer.Option(help="Parquet manifest of the cases to segment.")] = None,
    out: Annotated[str | None, typer.Option(help="Output root for masks, records, metrics.parquet, errors.parquet, run.json.")] = None,
    config: Annotated[str | None, typer.Option(help="YAML file of InferConfig fields; options given here override it.")] = None,
    date: Annotated[str | None, typer.Option(help="YYYY-MM-DD filling {date} in the URIs (default: today, UTC).")] = None,
    workers: Annotated[int | None, typer.Option(help="Predictor actors, each loading the model once.")] = None,
    gpus_per_worker: Annotated[float | None, typer.Option(help="GPUs per predictor actor (0: CPU).")] = None,
    cpus_per_worker: Annotated[float | None, typer.Option(help="CPUs per predictor actor, on CPU also its threads; default: fits a local machine, 1 on a cluster.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Slices per forward pass.")] = None,
    amp: Annotated[str | None, typer.Option(help="Autocast: none, bf16 or fp16 (GPU).")] = None,
    format: Annotated[str | None, typer.Option(help="Mask format: auto (the input's), nifti, tiff, png or dicom-seg.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Redo cases already complete in --out.")] = False,
    limit: Annotated[int | None, typer.Option(help="Only the first N cases of the manifest.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Probability above which a voxel is foreground (default: the checkpoint's).")] = None,
    largest_component: Annotated[bool | None, typer.Option(
        "--largest-component/--no-largest-component",
        help="Keep only each class's largest connected component, 3D over a patient's slices (default: the checkpoint's).")] = None,
    mirror: Annotated[bool | None, typer.Option(
        "--mirror/--no-mirror", help="Average over mirrored slices, 4 passes each (default: the checkpoint's).")] = None,
    save_probabilities: Annotated[bool, typer.Option("--save-probabilities", help="Also write per-class probability maps.")] = False,
    one_hot: Annotated[bool, typer.Option("--one-hot", help="Write classes as a stack (4D NIfTI, bit fields), not one label map in the source's values.")] = False,
    overlays: Annotated[int | None, typer.Option(help="Draw OUT/overlays/*.png (image + predicted mask) for the first N cases without ground truth.")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster address; default RAY_ADDRESS or a local instance.")] = None,
    case_timeout: Annotated[float | None, typer.Option(help="Seconds a case may spend in one stage before its worker is ended as hung (default 1800).")] = None,
    case_retries: Annotated[int | None, typer.Option(help="Tries more, each case alone, for the cases of a worker that died or hung (default 2).")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print run.json instead of the progress bar and tables.")] = False,
) -> None:
    """Segment every case of a manifest; re-running with the same --out skips completed cases.

    Exit code 0 when all cases are done, 3 when some failed (OUT/errors.parquet lists them), 2 for a bad checkpoint, manifest, config or storage endpoint.
    """
    from raysegment.infer import InferConfig, run_inference

    settings = InferConfig.load(
        config, date=date, model=model, manifest=manifest, out=out, workers=workers, gpus_per_worker=gpus_per_worker,
        cpus_per_worker=cpus_per_worker, batch_size=batch_size, amp=amp, format=format, overwrite=overwrite or None, limit=limit, threshold=threshold,
        largest_component=largest_component, mirror=mirror, save_probabilities=save_probabilities or None, one_hot=one_hot or None,
        overlays=overlays, address=address, case_timeout_s=case_timeout, case_retries=case_retries,
    )
    if json:
        result = run_inference(settings)
        print_json(result.run)
        raise typer.Exit(result.exit_code)
    result = run_with_progress(partial(run_inference, settings, console=console))
    rows = [("cases", result.cases), ("done", result.done), ("skipped", result.skipped), ("failed", result.failed),
            ("slices", result.slices), ("slices/s", round(result.slices_per_second, 2)), ("output", settings.out)]
    if settings.overlays:
        rows.append(("overlays", f"{settings.out.rstrip('/')}/overlays"))
    console.print(table(f"raysegment infer: {settings.model}", ("", "value"), rows), soft_wrap=True)
    for error in result.errors.head(_SHOWN_ERRORS).itertuples():
        console.print(f"[red]failed[/] {error.case_id} ({error.stage}): {error.error}", highlight=False, soft_wrap=True)
    if result.failed > _SHOWN_ERRORS:
        console.print(f"... and {result.failed - _SHOWN_ERRORS} more in {settings.out}/errors.parquet")
    raise typer.Exit(result.exit_code)


def run_with_progress(run):
    """``run(on_case=...)`` (inference, or a night of it) showing its cases: a progress bar on a
    terminal; elsewhere (a pipe, a job's log) a plain line every RAYSEGMENT_PROGRESS_SECONDS and a last one."""
    if not console.is_terminal:
        from raysegment.progress import CountProgress

        progress = CountProgress("infer", "cases", plain_line)
        result = run(on_case=lambda row, total: progress.update(
            total=total, skipped=row["status"] == "skipped", failed=row["status"] == "failed"))
        progress.finish()
        return result
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("segmenting", total=None)

        def advance(row: dict, total: int) -> None:
            bar.update(task, total=total, advance=1, description=f"{row['status']:>7} {row['case_id']}")

        return run(on_case=advance)


def register(app: typer.Typer) -> None:
    app.command("infer")(infer)
