"""``raysegment export``: a run's best model or one kept epoch, or any model, written as a model folder that evaluate and infer load."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from raysegment.cli._console import console


def export(
    model: Annotated[str, typer.Argument(help="Training run or tune experiment, a run's checkpoints/epoch_NNNN, or a model folder (local or s3://).")],
    out: Annotated[str, typer.Option("--out", "-o", help="Model folder to write (model.json + model.pt).")],
    epoch: Annotated[Optional[int], typer.Option(help="Kept epoch of a training run to export (see its checkpoints/); default its best model.")] = None,
) -> None:
    """Write a model folder that evaluate and infer load: a run's best model or any kept epoch, or a copy of a model."""
    from raysegment.train.export import export_model

    console.print(f"{model}{f' epoch {epoch}' if epoch is not None else ''}: {export_model(model, out, epoch)}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
