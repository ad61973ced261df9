"""``raysegment demo``: the whole pipeline on a generated sample dataset, on this machine."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from raysegment.cli._console import console, table


def demo(
    workdir: Annotated[str, typer.Option(help="Folder (or s3:// prefix) the demo writes into.")] = "raysegment-demo",
    patients: Annotated[int, typer.Option(help="Patients in the generated sample.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the sample, the split and the training.")] = 0,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 12,
    train: Annotated[bool, typer.Option("--train/--no-train", help="Train and evaluate after ingesting.")] = True,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address; default RAY_ADDRESS or a local Ray.")] = None,
) -> None:
    """Generate the LGG-layout sample, ingest it, train a small U-Net on Ray, evaluate it, and show the results."""
    from raysegment.demo import DemoConfig, run_demo

    result = run_demo(DemoConfig(workdir=workdir, patients=patients, seed=seed, epochs=epochs, train=train, address=address),
                      console=console)
    rows = [(name, s["patients"], s["cases"], s["positives"]) for name, s in result.summary["splits"].items()]
    console.print(f"sample data: {result.data_root}")
    console.print(table(f"manifest: {result.manifest_uri}", ["split", "patients", "cases", "positives"], rows))
    if result.run is None:
        return
    best = result.run.summary["best"]
    console.print(f"best validation Dice per patient {best['val_patient_dice']:.3f} (epoch {result.run.summary['best_epoch']}; "
                  f"all voxels pooled {best['val_dice']:.3f}); run: {result.run.run_uri}", highlight=False)
    overview = result.evaluation.overview
    console.print(table("evaluation of the best model", overview.columns, overview.itertuples(index=False)))
    scores = result.evaluation.summary
    shown = scores[scores["metric"].isin(["dice", "iou", "precision", "recall", "hd95"])]
    console.print(table("per slice", ["split", "class", "metric", "mean", "std", "median"],
                        shown[["split", "class", "metric", "mean", "std", "median"]].itertuples(index=False)))
    console.print(f"training curves: {result.run.run_uri}/train_curves.png", highlight=False)
    for name, uri in result.evaluation.figures.items():
        console.print(f"figure {name}: {uri}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
