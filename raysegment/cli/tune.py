"""``raysegment tune``: a Ray Tune search whose trials are Ray Train runs."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from raysegment.cli._console import console, print_json, table

Opt = typer.Option


def tune(
    out: Annotated[Optional[str], Opt("--out", "-o", help="Experiment folder (local or s3://); the same folder again resumes.")] = None,
    model: Annotated[Optional[str], Opt(help="Model name; picks the default search space.")] = None,
    manifest: Annotated[Optional[str], Opt(help="Manifest (.parquet, local or s3://).")] = None,
    job: Annotated[Optional[str], Opt(help="Tune job file (jobs/tune_*.yaml); options override it.")] = None,
    config: Annotated[Optional[str], Opt("--config", "-c", help="Base training job (raysegment train --config) of every trial.")] = None,
    space: Annotated[Optional[str], Opt(help="Search space YAML: dotted keys -> {choice|uniform|loguniform|grid: [...]}, null drops a default.")] = None,
    samples: Annotated[Optional[int], Opt(help="Trials to sample (times the size of any grid).")] = None,
    max_epochs: Annotated[Optional[int], Opt(help="Epochs of a trial that is not stopped early.")] = None,
    metric: Annotated[Optional[str], Opt(help="Metric that ranks trials (default val_patient_dice; val_dice, val_iou, val_loss...).")] = None,
    mode: Annotated[Optional[str], Opt(help="max or min.")] = None,
    scheduler: Annotated[Optional[str], Opt(help="asha (early stopping) or fifo.")] = None,
    search: Annotated[Optional[str], Opt(help="random or optuna (TPE).")] = None,
    grace_period: Annotated[Optional[int], Opt(help="ASHA: epochs before a trial may be stopped.")] = None,
    gpus_per_trial: Annotated[Optional[float], Opt(help="GPUs per trial, split over its workers; 0.25 packs 4 trials on a GPU.")] = None,
    workers_per_trial: Annotated[Optional[int], Opt(help="Ray Train workers (DDP) per trial.")] = None,
    cpus_per_worker: Annotated[Optional[float], Opt(help="CPUs per trial worker. Default: what fits a local machine, 1 on a cluster.")] = None,
    max_concurrent: Annotated[Optional[int], Opt(help="Trials at a time; default what a local machine holds, unlimited on a cluster (the autoscaler adds nodes).")] = None,
    retry_errored: Annotated[Optional[bool], Opt("--retry-errored/--no-retry-errored", help="On resume, run errored trials again.")] = None,
    seed: Annotated[Optional[int], Opt(help="Seed of the search algorithm.")] = None,
    set_: Annotated[Optional[list[str]], Opt("--set", help="Any tune config value as key=YAML, e.g. train.optim.amp=bf16 (repeatable).")] = None,
    show_space: Annotated[bool, Opt("--show-space", help="Print the search space and exit.")] = False,
    address: Annotated[Optional[str], Opt(help="Ray cluster address; default RAY_ADDRESS or a local Ray.")] = None,
    as_json: Annotated[bool, Opt("--json", help="Print the experiment summary as JSON.")] = False,
) -> None:
    """Search hyperparameters with Ray Tune (ASHA by default); every trial is a full Ray Train run."""
    from raysegment.train.config import parse_set
    from raysegment.tune import load_tune_config, run_tune, search_space
    from raysegment.tune.space import describe

    overrides = {
        "out": out, "model": model, "manifest": manifest, "samples": samples, "max_epochs": max_epochs,
        "metric": metric, "mode": mode, "scheduler": scheduler, "search": search, "grace_period": grace_period,
        "gpus_per_trial": gpus_per_trial, "workers_per_trial": workers_per_trial,
        "train.scaling.cpus_per_worker": cpus_per_worker, "max_concurrent": max_concurrent,
        "retry_errored": retry_errored, "seed": seed,
    }
    tune_config = load_tune_config(job, config, space, overrides, sets=parse_set(set_ or []))
    if show_space:
        console.print(table(f"search space of {tune_config.model_name()}", ["key", "kind", "values"], describe(search_space(tune_config))))
        return
    result = run_tune(tune_config, address=address, console=None if as_json else console)
    if as_json:
        print_json(result.summary)
        return
    metric_name = tune_config.metric
    ranked = result.trials.sort_values(f"best_{metric_name}", ascending=tune_config.mode == "min", na_position="last")
    rows = [(int(r["rank"]) if r["rank"] == r["rank"] else "", r["trial"], r["status"], r["epochs_run"], r.get(f"best_{metric_name}"))
            for r in ranked.to_dict(orient="records")]
    console.print(table("ranking", ["rank", "trial", "status", "epochs", f"best {metric_name}"], rows))
    console.print(f"best trial: {result.best_trial} ({metric_name} {result.best.get(metric_name, float('nan')):.4f})\n"
                  f"best model: {result.best_model_uri}\nbest config: {result.best_config_uri}\n"
                  f"{result.summary['trial_epochs']} trial-epochs, {result.summary['wall_time_s']:.0f} s", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)
