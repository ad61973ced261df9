"""``raysegment ingest {lgg,brats,lv,msd,nnunet,table}``: a dataset in its published layout, or a case table -> a split manifest."""

from __future__ import annotations

from typing import Annotated

import typer

from raysegment.cli._console import console, print_json, table

ingest_app = typer.Typer(help="Build a validated, patient-split Parquet manifest from a dataset folder (local or s3://).",
                         no_args_is_help=True)

Src = Annotated[str, typer.Argument(help="Dataset root (local folder, file:// or s3:// prefix).")]
TableFile = Annotated[str, typer.Argument(help="Case table (.csv or .parquet; local, file:// or s3://); relative paths in it are relative to its folder.")]
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
    summary = {**result.summary, "problems": result.problems, "manifest": out, "labels": result.labels}
    if as_json:
        print_json(summary)
        return
    rows = [(name, s["patients"], s["cases"], s["positives"]) for name, s in summary["splits"].items()]
    console.print(table(f"{kind} manifest: {out}", ["split", "patients", "cases", "positives"], rows))
    console.print(f"patients {summary['patients']}, cases {summary['cases']}, slices {summary['slices']}, "
                  f"positives {summary['positives']}, problems {len(result.problems)}")
    for problem in result.problems:
        console.print(f"[yellow]problem:[/] {problem}", highlight=False, soft_wrap=True)
    if result.labels is not None:
        from raysegment.ingest.labels import training_hint

        console.print(training_hint(result.labels, list(result.manifest["channels"].iloc[0])), highlight=False, markup=False, soft_wrap=True)


def _command(kind: str, doc: str, src_type=Src):
    def command(src: Src, out: Out, train: Train = 0.8, val: Val = 0.1, test: Test = 0.1, seed: Seed = 0, as_json: Json = False) -> None:
        run_ingest(kind, src, out, train, val, test, seed, as_json)

    command.__annotations__["src"] = src_type  # the table importer takes a file, not a folder
    command.__doc__ = doc
    return command


# One line per importer of raysegment.ingest.IMPORTERS (a test keeps the two equal); listing them here
# keeps the CLI from importing pandas and pyarrow before a command runs.
ingest_app.command("lgg")(_command("lgg", "Kaggle lgg-mri-segmentation (kaggle_3m/ TIFF slices and masks)."))
ingest_app.command("brats")(_command("brats", "BraTS 2020 (per-case flair/t1/t1ce/t2/seg NIfTI volumes)."))
ingest_app.command("lv")(_command("lv", "Cardiac left ventricle (training/ and test/ DICOM with PNG masks)."))
ingest_app.command("msd")(_command("msd", "Medical Segmentation Decathlon (dataset.json, imagesTr/, labelsTr/, imagesTs/; 4D multi-modality NIfTI)."))
ingest_app.command("nnunet")(_command("nnunet", "nnU-Net v2 raw dataset (dataset.json, imagesTr/<case>_0000.nii.gz per channel, labelsTr/, imagesTs/)."))
ingest_app.command("table")(_command("table", "A CSV or Parquet table of cases (image or image_<channel>, mask, patient_id, case_id columns).", TableFile))


def register(app: typer.Typer) -> None:
    app.add_typer(ingest_app, name="ingest")
