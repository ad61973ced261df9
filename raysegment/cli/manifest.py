"""``raysegment manifest new-scans``: the manifest of archive scans no earlier inference run processed."""

from __future__ import annotations

from typing import Annotated

import typer

from raysegment.cli._console import console

manifest_app = typer.Typer(help="Build manifests for inference jobs.", no_args_is_help=True)


@manifest_app.command("new-scans")
def new_scans(
    archive: Annotated[str, typer.Argument(help="Archive prefix in a dataset layout (local or s3://).")],
    out: Annotated[str, typer.Option("--out", "-o", help="Manifest to write (.parquet, local or s3://).")],
    kind: Annotated[str, typer.Option(help="Layout of the archive: lgg, brats or lv.")] = "brats",
    processed: Annotated[str | None, typer.Option(help="Prefix of earlier inference outputs; cases with a record there are left out.")] = None,
    date: Annotated[str | None, typer.Option(help="YYYY-MM-DD filling {date} in --out (default: today, UTC).")] = None,
) -> None:
    """List the archive's scans that have no completion record under --processed, as a manifest."""
    from raysegment.infer.config import fill_date
    from raysegment.infer.new_scans import new_scans as build

    out = fill_date(out, date)
    df = build(archive, kind, processed, out)
    console.print(f"{len(df)} new {kind} cases -> {out}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(manifest_app, name="manifest")
