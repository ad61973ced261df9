"""``raysegment score``: any tool's masks against reference masks, matched by case name."""

from __future__ import annotations

import json as jsonlib
from typing import Annotated, Optional

import typer

from raysegment.cli._console import console, print_json, table
from raysegment.errors import ConfigError

Opt = typer.Option
SHOWN_METRICS = ("dice", "iou", "precision", "recall", "hd95")
_SHOWN_PROBLEMS = 20


def score(
    pred: Annotated[str, Opt(help="Folder of predicted masks (local or s3://), or a manifest (.parquet with case_id, mask_uri) naming them.")],
    truth: Annotated[str, Opt(help="Folder of reference masks, or a raysegment manifest (.parquet).")],
    out: Annotated[Optional[str], Opt("--out", "-o", help="Folder for case_metrics.parquet, summary.parquet and errors.parquet.")] = None,
    labels: Annotated[Optional[str], Opt(help='Classes as JSON, name -> raw label values, e.g. \'{"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}\'; default: nonzero.')] = None,
    workers: Annotated[int, Opt(help="Cases read and scored at once.")] = 4,
    as_json: Annotated[bool, Opt("--json", help="Print counts, summary, errors and unmatched files as one JSON document.")] = False,
) -> None:
    """Score predicted masks against reference masks: per-case Dice, IoU, precision, recall, HD95 and a summary per class.

    Masks match by case name: the file name without its ending (.nii.gz, .nii, .tif, .tiff, .png, .dcm) and a trailing _mask, _seg or _label.

    Against a manifest, a prediction matches by case_id or by the file name raysegment infer gives the case.

    Exit code 0 when every matched case was scored, 3 when some failed (listed in OUT/errors.parquet), 2 for bad input.
    """
    from raysegment.score import score as run_score

    result = run_score(pred, truth, out, _parse_labels(labels), workers=workers)
    if as_json:
        print_json({"counts": result.counts, "summary": result.summary.to_dict(orient="records"),
                    "errors": result.errors.to_dict(orient="records"),
                    "unmatched_pred": result.unmatched_pred, "unmatched_truth": result.unmatched_truth})
        raise typer.Exit(result.exit_code)
    shown = result.summary[result.summary["metric"].isin(SHOWN_METRICS)]
    columns = ["class", "metric", "mean", "std", "median"]
    console.print(table(f"{pred} vs {truth}", columns, shown[columns].itertuples(index=False)), soft_wrap=True)
    console.print(table("cases", ("", "count"), result.counts.items()))
    for error in result.errors.head(_SHOWN_PROBLEMS).itertuples():
        console.print(f"[red]failed[/] {error.case_id}: {error.error}", highlight=False, soft_wrap=True)
    if len(result.errors) > _SHOWN_PROBLEMS:
        console.print(f"... failed {len(result.errors) - _SHOWN_PROBLEMS} more", highlight=False)
    for kind, items in (("no reference for", result.unmatched_pred), ("no prediction for", result.unmatched_truth)):
        for item in items[:_SHOWN_PROBLEMS]:
            console.print(f"[yellow]{kind}[/] {item}", highlight=False, soft_wrap=True)
        if len(items) > _SHOWN_PROBLEMS:
            console.print(f"... {kind} {len(items) - _SHOWN_PROBLEMS} more", highlight=False)
    if out is not None:
        console.print(f"per-case metrics: {out}/case_metrics.parquet", highlight=False, soft_wrap=True)
    raise typer.Exit(result.exit_code)


def _parse_labels(text: Optional[str]) -> Optional[dict]:
    if text is None:
        return None
    try:
        labels = jsonlib.loads(text)
    except ValueError as exc:
        raise ConfigError(f"--labels: not JSON ({exc}); expected e.g. '{{\"WT\": [1, 2, 4], \"ET\": [4]}}'") from exc
    if not isinstance(labels, dict):
        raise ConfigError(f"--labels: expected a JSON object of class name -> label values, got {text!r}")
    return labels


def register(app: typer.Typer) -> None:
    app.command("score")(score)
