"""``raysegment model publish|list``: immutable model versions in a repository, and the aliases naming them."""

from __future__ import annotations

from typing import Annotated

import typer

from raysegment.cli._console import console, print_json, table

model_app = typer.Typer(help="Publish model versions to a repository (s3://models/NAME) and list them.", no_args_is_help=True)

_SHOWN_METRICS = 3


@model_app.command("publish")
def publish(
    model: Annotated[str, typer.Argument(help="Model folder, training run, tune experiment or a run's checkpoints/epoch_NNNN (local or s3://).")],
    repository: Annotated[str, typer.Argument(help="Model repository, e.g. s3://models/NAME.")],
    alias: Annotated[list[str] | None, typer.Option(help="Alias to point at the version, e.g. production (repeatable).")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print the version as JSON.")] = False,
) -> None:
    """Publish a model as an immutable, content-addressed version (REPOSITORY/versions/ID) and move the aliases to it.

    Publishing a model already there only moves the aliases: publishing REPOSITORY/versions/ID with --alias production rolls back.
    """
    from raysegment.models.versions import publish as publish_version
    from raysegment.train.export import resolve_model

    version = publish_version(resolve_model(model), repository, alias or [], source=model)
    if json:
        print_json(version.to_dict())
        return
    moved = f" ({', '.join(alias)} -> {version.version})" if alias else ""
    console.print(f"published {version.uri}{moved}", highlight=False, soft_wrap=True)


@model_app.command("list")
def list_(
    repository: Annotated[str, typer.Argument(help="Model repository, e.g. s3://models/NAME.")],
    json: Annotated[bool, typer.Option("--json", help="Print one JSON list instead of a table.")] = False,
) -> None:
    """List a repository's versions, oldest first, with when and from what each was published, its metrics and aliases."""
    from raysegment.models.versions import list_versions

    versions = list_versions(repository)
    if json:
        print_json([v.to_dict() for v in versions])
        return
    rows = ((v.version, ", ".join(v.aliases), v.created, v.model, _metrics(v.metrics), v.source) for v in versions)
    console.print(table(f"{repository}: {len(versions)} versions", ("version", "aliases", "created", "model", "metrics", "source"), rows),
                  soft_wrap=True)


def _metrics(metrics: dict) -> str:
    shown = sorted(metrics.items(), key=lambda kv: not kv[0].startswith("val_"))[:_SHOWN_METRICS]
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown)


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
