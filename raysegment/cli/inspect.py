"""``raysegment inspect``: what a scan file holds (shape, dtype, spacing, orientation, range, channels)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from raysegment.cli._console import console, print_json, table


def inspect(
    uri: Annotated[str, typer.Argument(help="Scan file (TIFF, NIfTI, DICOM, PNG) or DICOM series folder; local or s3://.")],
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    format: Annotated[
        Optional[str],
        typer.Option(help="Reader to use (tiff, nifti, dicom, png); default: by file ending, else by content."),
    ] = None,
) -> None:
    """Show shape, dtype, voxel spacing, orientation, value range and channels of a scan."""
    from raysegment.readers import read_scan

    summary = read_scan(uri, format=format).summary()
    if json:
        print_json(summary)
        return
    console.print(table(summary["source"], ("field", "value"), _rows(summary)), soft_wrap=True)


def _rows(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """The summary as ``(field, text)`` rows, metadata last."""
    low, high = summary["min"], summary["max"]
    rows = [
        ("shape", " x ".join(str(n) for n in summary["shape"])),
        ("dtype", summary["dtype"]),
        ("spacing (mm)", " x ".join(f"{s:.4g}" for s in summary["spacing"])),
        ("orientation", summary["orientation"]),
        ("range", "empty" if low is None else f"{low:.6g} .. {high:.6g}"),
        ("channels", ", ".join(summary["channels"])),
    ]
    rows.extend((key, value) for key, value in summary["metadata"].items())
    return rows


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)
