"""``raysegment demo``: the whole pipeline on a generated sample dataset, on this machine."""

from __future__ import annotations

from typing import Annotated

import typer

from raysegment.cli._console import console, table


def demo(
    workdir: Annotated[str, typer.Option(help="Folder (or s3:// prefix) the demo writes into.")] = "raysegment-demo",
    patients: Annotated[int, typer.Option(help="Patients in the generated sample.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the sample and the split.")] = 0,
) -> None:
    """Generate the LGG-layout sample dataset and ingest it into a patient-split manifest."""
    from raysegment.demo import DemoConfig, run_demo

    result = run_demo(DemoConfig(workdir=workdir, patients=patients, seed=seed))
    rows = [(name, s["patients"], s["cases"], s["positives"]) for name, s in result.summary["splits"].items()]
    console.print(f"sample data: {result.data_root}")
    console.print(table(f"manifest: {result.manifest_uri}", ["split", "patients", "cases", "positives"], rows))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
