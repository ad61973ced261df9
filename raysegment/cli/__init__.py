"""The ``raysegment`` command line: thin typer commands that build a config and call the library.

Each command lives in its own module with a ``register(app)`` function; adding a command is one
module and one name in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from raysegment.errors import RaySegmentError

COMMAND_MODULES = ["inspect", "sample_data", "ingest", "demo", "models", "model", "infer", "nightly", "manifest", "train", "export", "evaluate", "tune", "compare", "score"]



class _Group(TyperGroup):
    """Turns user errors into one red line and exit code 2 instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RaySegmentError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_Group,
    name="raysegment",
    help="Train, tune and run MRI segmentation models at cluster scale on Ray.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global_options(
    s3_endpoint: Annotated[
        Optional[str],
        typer.Option(help="S3-compatible endpoint URL (MinIO, Ceph); default AWS_ENDPOINT_URL_S3 or AWS itself."),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Show Ray's INFO logs and the Ray workers' output (default: warnings and errors only)."),
    ] = False,
) -> None:
    """Train, tune and run MRI segmentation models at cluster scale on Ray.

    Every URI may be a local path, file:// or s3://. Commands that use Ray join the cluster named
    by --address or RAY_ADDRESS, and start a local Ray instance otherwise. Without a terminal
    (ray job submit, a CronJob), progress is one plain line every RAYSEGMENT_PROGRESS_SECONDS (30).
    """
    from raysegment import runtime

    runtime.set_verbose(verbose)
    if s3_endpoint:
        from raysegment import storage

        storage.configure(endpoint_url=s3_endpoint)


for _name in COMMAND_MODULES:
    importlib.import_module(f"raysegment.cli.{_name}").register(app)


def main() -> None:
    """Console entry point."""
    app()
