"""``raysegment ingest {lgg,brats,lv}``: a dataset in its published layout -> a split manifest."""

from __future__ import annotations

from typing import Annotated

import typer

from raysegment.cli._console import console, print_json, table

ingest_app = typer.Typer(help="Build a validated, patient-split Parquet manifest from a dataset folder (local or s3://).",
                         no_args_is_help=True)

Src = Annotated[str, typer.Argument(help="Dataset root (local folder, file:// or s3:// prefix).")]
Out = Annotated[str, typer.Option("--out", "-o", help="Manifest to write (.parquet, local or s3://).")]
Train = Annotated[float, typer.Option(help="Share of patients for training.")]
Val = Annotated[float, typer.Option(help="Share of patients for validation.")]
Test = Annotated[float, typer.Option(help="Share of patients for testing.")]
Seed = Annotated[int, typer.Option(help="Seed of the patient split.")]
Json = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


def run_ingest(kind: str, src: str, out: str, train: float, val: float, test: float, seed: int, as_json: bool) -> None:
    from raysegment.ingest import ingest
    from raysegment.splits import SplitConfig

    result = ingest(kind, src, out, split=SplitConfig(train=train, val=val, test=test, seed=seed))
    summary = {**result.summary, "problems": result.problems, "manifest": out}
    if as_json:
        print_json(summary)
        return
    rows = [(name, s["patients"], s["cases"], s["positives"]) for name, s in summary["splits"].items()]
    console.print(table(f"{kind} manifest: {out}", ["split", "patients", "cases", "positives"], rows))
    console.print(f"patients {summary['patients']}, cases {summary['cases']}, slices {summary['slices']}, "
                  f"positives {summary['positives']}, problems {len(result.problems)}")
    for problem in result.problems:
        console.print(f"[yellow]problem:[/] {problem}", highlight=False, soft_wrap=True)


def _command(kind: str, doc: str):
    def command(src: Src, out: Out, train: Train = 0.8, val: Val = 0.1, test: Test = 0.1, seed: Seed = 0, as_json: Json = False) -> None:
        run_ingest(kind, src, out, train, val, test, seed, as_json)

    command.__doc__ = doc
    return command


ingest_app.command("lgg")(_command("lgg", "Kaggle lgg-mri-segmentation (kaggle_3m/ TIFF slices and masks)."))
ingest_app.command("brats")(_command("brats", "BraTS 2020 (per-case flair/t1/t1ce/t2/seg NIfTI volumes)."))
ingest_app.command("lv")(_command("lv", "Cardiac left ventricle (training/ and test/ DICOM with PNG masks)."))


def register(app: typer.Typer) -> None:
    app.add_typer(ingest_app, name="ingest")
