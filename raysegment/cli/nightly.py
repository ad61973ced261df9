"""``raysegment nightly``: one night of the nightly job, from new scans to masks, metrics, ledger and report."""

from __future__ import annotations

from functools import partial
from typing import Annotated

import typer

from raysegment.cli._console import console, print_json, table


def nightly(
    config: Annotated[str | None, typer.Option(help="YAML file of NightlyConfig fields (jobs/nightly.yaml); options given here override it.")] = None,
    date: Annotated[str | None, typer.Option(help="The night, YYYY-MM-DD (default: today, UTC); re-running a night finishes it.")] = None,
    archive: Annotated[str | None, typer.Option(help="Archive root in an importer's layout (local or s3://).")] = None,
    kind: Annotated[str | None, typer.Option(help="Importer that reads the archive: lgg, brats, lv, msd, nnunet or table.")] = None,
    model: Annotated[str | None, typer.Option(help="Model folder, run, or published model (an alias is resolved once, at start).")] = None,
    out: Annotated[str | None, typer.Option(help="Output root: ledger.parquet and one date=YYYY-MM-DD/ folder per night.")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Retry cases whose last attempt with this model failed.")] = False,
    workers: Annotated[int | None, typer.Option(help="Predictor actors (default: the job's, or what fits a local machine).")] = None,
    gpus_per_worker: Annotated[float | None, typer.Option(help="GPUs per predictor actor (0: CPU).")] = None,
    cpus_per_worker: Annotated[float | None, typer.Option(help="CPUs per predictor actor.")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster address; default RAY_ADDRESS or a local instance.")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print night.json instead of the tables.")] = False,
) -> None:
    """Segment the archive's scans this model version has not processed, and record them in the ledger.

    A night with no new scans is a success that says so.

    Exit code 0 when every case is done, 3 when some failed (listed in OUT/date=D/report.md), 2 for a bad config, archive or model, or a busy output.
    """
    from raysegment.cli.infer import run_with_progress
    from raysegment.nightly import NightlyConfig, run_night

    settings = NightlyConfig.load(config, archive=archive, kind=kind, model=model, out=out, retry_failed=retry_failed or None,
                                  infer={"workers": workers, "gpus_per_worker": gpus_per_worker, "cpus_per_worker": cpus_per_worker,
                                         "address": address})
    if json:
        result = run_night(settings, date)
        print_json(result.summary)
        raise typer.Exit(result.exit_code)
    result = run_with_progress(partial(run_night, settings, date, console=console))
    summary = result.summary
    if not result.new:
        console.print(f"no new scans in {settings.archive} for model version {result.model_version} "
                      f"({result.found} cases, all processed): nothing to do", highlight=False, soft_wrap=True)
    rows = [("night", result.date), ("model version", result.model_version), ("cases in the archive", result.found),
            ("new", result.new), ("done", result.done), ("skipped", result.skipped), ("failed", result.failed),
            ("seconds", summary["seconds"]), ("cases/s", summary["cases_per_second"]), ("report", f"{result.folder}/report.md")]
    console.print(table("raysegment nightly", ("", "value"), rows), soft_wrap=True)
    for error in result.errors.head(20).itertuples():
        console.print(f"[red]failed[/] {error.case_id} ({error.stage}): {error.error}", highlight=False, soft_wrap=True)
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    app.command("nightly")(nightly)
