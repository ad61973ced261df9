"""``raysegment models``: the registered models and their parameter counts."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from raysegment.cli._console import console, print_json, table


def model_rows(in_channels: int = 3, classes: int = 1) -> list[dict[str, Any]]:
    """Name, parameter count of the default configuration, description and options of every model.

    Models are built on the ``meta`` device (shapes only: no memory, no initialisation cost) and
    without pretrained weights, so listing never downloads anything.
    """
    import torch

    from raysegment.models import ModelSpec, count_parameters, list_models, model_description, model_options

    rows = []
    for name in list_models():
        with torch.device("meta"):
            model = ModelSpec(name, in_channels=in_channels, classes=classes).build(pretrained=False)
        rows.append(
            {
                "name": name,
                "parameters": count_parameters(model),
                "description": model_description(name),
                "options": model_options(name),
            }
        )
    return rows


def models(
    json: Annotated[bool, typer.Option("--json", help="Print one JSON list instead of a table.")] = False,
    in_channels: Annotated[int, typer.Option(help="Input channels used for the parameter counts.")] = 3,
    classes: Annotated[int, typer.Option(help="Output classes used for the parameter counts.")] = 1,
) -> None:
    """List the registered models with their parameter counts in the default configuration."""
    rows = model_rows(in_channels, classes)
    if json:
        print_json(rows)
        return
    title = f"models (in_channels={in_channels}, classes={classes}, default options)"
    body = ((r["name"], f"{r['parameters']:,}", r["description"]) for r in rows)
    console.print(table(title, ("model", "parameters", "description"), body))


def register(app: typer.Typer) -> None:
    app.command("models")(models)
