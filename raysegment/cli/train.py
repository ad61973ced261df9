"""``raysegment train``: a Ray Train run from a YAML job file and/or options."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from raysegment.cli._console import console, print_json, table

Opt = typer.Option


def train(
    out: Annotated[Optional[str], Opt("--out", "-o", help="Run folder (local or s3://); the same folder again resumes.")] = None,
    manifest: Annotated[Optional[str], Opt(help="Manifest (.parquet, local or s3://).")] = None,
    config: Annotated[Optional[str], Opt("--config", "-c", help="YAML job file (jobs/*.yaml); options override it.")] = None,
    model: Annotated[Optional[str], Opt(help="Model name (raysegment models list).")] = None,
    encoder: Annotated[Optional[str], Opt(help="Encoder of unet, unetpp or an smp-* model: classic (unet/unetpp's own), resnet34, vgg16, tu-<timm name>...")] = None,
    encoder_weights: Annotated[Optional[str], Opt(help="Encoder weights: imagenet, a local file, or none.")] = None,
    epochs: Annotated[Optional[int], Opt(help="Epochs.")] = None,
    batch_size: Annotated[Optional[int], Opt(help="Examples per worker and step.")] = None,
    lr: Annotated[Optional[float], Opt(help="Learning rate.")] = None,
    optimizer: Annotated[Optional[str], Opt(help="adam, adamw or sgd.")] = None,
    scheduler: Annotated[Optional[str], Opt(help="none, cosine, poly, plateau or onecycle.")] = None,
    loss: Annotated[Optional[str], Opt(help="Loss name or YAML weights, e.g. dice or '{bce: 0.5, jaccard: 0.5}'.")] = None,
    image_size: Annotated[Optional[int], Opt(help="Size of the final resize step (appended if there is none); 3D jobs: the patch's side.")] = None,
    channels: Annotated[Optional[str], Opt(help="Comma-separated channels (modalities) to feed, e.g. flair,t1ce.")] = None,
    augment: Annotated[Optional[bool], Opt("--augment/--no-augment", help="On-the-fly augmentation (data.augment.* via --set).")] = None,
    workers: Annotated[Optional[int], Opt(help="Training workers (DDP).")] = None,
    gpus_per_worker: Annotated[Optional[float], Opt(help="GPUs per worker (0: CPU training).")] = None,
    cpus_per_worker: Annotated[Optional[float], Opt(help="CPUs per worker. Default: what fits a local machine (1 CPU left for data loading), 1 on a cluster.")] = None,
    amp: Annotated[Optional[str], Opt(help="Mixed precision: none, bf16 or fp16 (fp16 on GPU only).")] = None,
    seed: Annotated[Optional[int], Opt(help="Random seed.")] = None,
    patience: Annotated[Optional[int], Opt(help="Early stopping: epochs without a better validation Dice.")] = None,
    max_failures: Annotated[Optional[int], Opt(help="Worker failures to recover from (-1: unlimited).")] = None,
    mlflow_uri: Annotated[Optional[str], Opt(help="MLflow tracking URI (e.g. file:///tmp/mlruns).")] = None,
    tensorboard: Annotated[Optional[bool], Opt("--tensorboard/--no-tensorboard", help="TensorBoard event files in RUN/tensorboard.")] = None,
    set_: Annotated[Optional[list[str]], Opt("--set", help="Any config value as section.key=YAML, e.g. model.config.depth=3 (repeatable).")] = None,
    folds: Annotated[Optional[int], Opt(help="Cross-validation: K patient-grouped folds of the train and val patients, each its own run "
                                            "in OUT/fold_K, all at once where they fit; OUT/ensemble averages their models.")] = None,
    fold: Annotated[Optional[int], Opt(help="With --folds: train only this fold (0 .. K-1), e.g. one cluster job per fold.")] = None,
    fold_seed: Annotated[int, Opt(help="With --folds: the seed that draws the folds (the training seed is --seed).")] = 0,
    address: Annotated[Optional[str], Opt(help="Ray cluster address; default RAY_ADDRESS or a local Ray.")] = None,
    as_json: Annotated[bool, Opt("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """Train a segmentation model with Ray Train (DDP over --workers) and write the run's reports."""
    from raysegment.errors import ConfigError
    from raysegment.train import load_config
    from raysegment.train import train as run_train
    from raysegment.train.config import cli_overrides

    overrides = cli_overrides(
        out=out, manifest=manifest, model=model, encoder=encoder, encoder_weights=encoder_weights, epochs=epochs,
        batch_size=batch_size, lr=lr, optimizer=optimizer, scheduler=scheduler, loss=loss, channels=channels,
        augment=augment, workers=workers, gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker, amp=amp,
        seed=seed, patience=patience, max_failures=max_failures, mlflow_uri=mlflow_uri, tensorboard=tensorboard,
        sets=set_ or [],
    )
    job = load_config(config, overrides, image_size=image_size)
    if fold is not None and folds is None:
        raise ConfigError("--fold K picks one fold of a cross-validation: give --folds N too")
    if folds is not None:
        _train_folds(job, folds, fold, fold_seed, address, as_json)
        return
    result = run_train(job, address=address, console=None if as_json else console)
    if as_json:
        print_json(result.summary)
        return
    best = result.summary["best"]
    rows = [(name, best.get(f"train_{name}"), best.get(f"val_{name}")) for name in ("loss", "dice", "iou", "precision", "recall")]
    rows += [("dice per patient", "-", best.get("val_patient_dice")), ("empty slices", "-", best.get("val_empty_slices"))]
    console.print(table(f"best epoch {result.summary['best_epoch']} of {result.summary['epochs_run']} (by {result.summary['monitor']}; "
                        "dice..recall: all voxels pooled)", ["metric", "train", "val"], rows))
    console.print(f"run: {result.run_uri}\nbest model: {result.best_model_uri}\nlast model: {result.summary['last_model_uri']}\n"
                  f"the run stands for its {result.summary.get('selected', 'best')} model (checkpoint.select)\n"
                  f"{result.summary['images_per_s']:.1f} images/s, {result.summary['wall_time_s']:.0f} s", highlight=False)


def _train_folds(job, folds: int, fold: Optional[int], seed: int, address: Optional[str], as_json: bool) -> None:
    from raysegment.train.folds import SUMMARY_FILE, train_folds

    result = train_folds(job, folds, fold=fold, seed=seed, address=address, console=None if as_json else console)
    if as_json:
        print_json({"folds": result.folds, "cv_summary": result.cv_summary})
        return
    summary = result.summary
    figures = [c for c in ("val_patient_dice", "val_dice", "val_loss") if c in summary.columns]
    rows = [(int(row["fold"]), int(row["patients"]), f"{row['selected']} (epoch {row['epoch']})", *(row[c] for c in figures))
            for _, row in summary.iterrows()]
    if len(summary) > 1:
        rows.append(("mean", int(summary["patients"].sum()), "", *(summary[c].mean() for c in figures)))
    console.print(table(f"cross-validation: {len(summary)} of {folds} folds trained (validation figures of each fold's model)",
                        ["fold", "patients", "model", *figures], rows))
    console.print(f"folds: {result.out}/folds.json\nsummary: {result.out}/{SUMMARY_FILE}\n"
                  f"ensemble: {result.ensemble_uri or 'written once every fold has a model'}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
