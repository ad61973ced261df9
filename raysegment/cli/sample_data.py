"""``raysegment sample-data``: write a small synthetic dataset in a real published layout."""

from __future__ import annotations

from typing import Annotated

import typer

from raysegment.cli._console import console


def sample_data(
    out: Annotated[str, typer.Argument(help="Folder or s3:// prefix to write the dataset under.")],
    kind: Annotated[str, typer.Option(help="Layout: lgg (Kaggle TIFF), brats (BraTS 2020 NIfTI), lv (DICOM + PNG), msd (Decathlon dataset.json + 4D NIfTI) "
                                           "or nnunet (nnU-Net v2 raw, a NIfTI per channel).")] = "lgg",
    patients: Annotated[int, typer.Option(help="Number of patients (training cases).")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same files.")] = 0,
) -> None:
    """Write a small synthetic dataset (learnable lesions) in a real published layout."""
    from raysegment.sample_data import make_sample_data

    info = make_sample_data(out, kind, patients=patients, seed=seed)
    console.print(f"wrote {info.files} files for {info.patients} patients ({info.kind}) under {info.root}")


def register(app: typer.Typer) -> None:
    app.command("sample-data")(sample_data)
