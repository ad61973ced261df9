"""``raysegment manifest new-scans``: the manifest of the archive scans a nightly run would process."""

from __future__ import annotations

from typing import Annotated

import typer

from raysegment.cli._console import console

manifest_app = typer.Typer(help="Build manifests for inference jobs.", no_args_is_help=True)


@manifest_app.command("new-scans")
def new_scans(
    archive: Annotated[str, typer.Argument(help="Archive prefix in a dataset layout (local or s3://).")],
    out: Annotated[str, typer.Option("--out", "-o", help="Manifest to write (.parquet, local or s3://).")],
    kind: Annotated[str, typer.Option(help="Importer that reads the archive: lgg, brats, lv, msd, nnunet or table.")] = "brats",
    nightly: Annotated[str | None, typer.Option(help="Output root of `raysegment nightly`: cases its ledger has for --model are left out.")] = None,
    model: Annotated[str | None, typer.Option(help="The nightly's model (a published NAME@alias, a model folder or a run).")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Keep the cases whose last attempt failed.")] = False,
    date: Annotated[str | None, typer.Option(help="YYYY-MM-DD filling {date} in --out (default: today, UTC).")] = None,
) -> None:
    """List the archive's scans that the nightly at --nightly has not processed with --model, as a manifest (what its next night would do)."""
    from raysegment import manifest as mf
    from raysegment.infer.config import fill_date
    from raysegment.nightly.run import new_scans as build

    out = fill_date(out, date)
    df = build(archive, kind, nightly, model, retry_failed)
    mf.write_manifest(df, out)
    console.print(f"{len(df)} new {kind} cases -> {out}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(manifest_app, name="manifest")
