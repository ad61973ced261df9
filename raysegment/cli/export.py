"""``raysegment export``: one kept epoch of a training run, written as a model that evaluate and infer load."""

from __future__ import annotations

from typing import Annotated

import typer

from raysegment.cli._console import console


def export(
    run: Annotated[str, typer.Argument(help="Training run folder (local or s3://).")],
    epoch: Annotated[int, typer.Option(help="Epoch whose checkpoint to export (see the run's checkpoints/).")],
    out: Annotated[str, typer.Option("--out", "-o", help="Model folder to write (model.json + model.pt).")],
) -> None:
    """Export the model of one kept epoch (best/ and last/ are exported by training itself)."""
    from raysegment.train.export import export_epoch

    console.print(f"epoch {epoch} of {run}: {export_epoch(run, epoch, out)}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
