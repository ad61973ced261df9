"""``raysegment score``: exit codes, the printed summary and counts, --json, and the written Parquet."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from typer.testing import CliRunner

from raysegment.cli import app


@pytest.fixture
def folders(tmp_path):
    """Two cases with known Dice (0.5 and 0.75), an extra prediction and an extra reference."""
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir(), truth.mkdir()
    for name, predicted in (("half", (slice(0, 4), slice(0, 4))), ("most", (slice(0, 6), slice(0, 8)))):
        t, p = np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)
        t[:8, :4] = 1  # 32 pixels
        p[predicted] = 255  # half: tp 16, fp 0, fn 16 -> 32/48; most: tp 24, fp 24, fn 8 -> 48/80
        tifffile.imwrite(pred / f"{name}.tif", p)
        tifffile.imwrite(truth / f"{name}_mask.tif", t)
    tifffile.imwrite(pred / "stray.tif", np.ones((8, 8), np.uint8))
    tifffile.imwrite(truth / "lonely_mask.tif", np.ones((8, 8), np.uint8))
    return pred, truth


DICE = {"half": 32 / 48, "most": 48 / 80}


def test_prints_summary_and_counts_and_writes_parquet(folders, tmp_path):
    pred, truth = folders
    out = tmp_path / "out"

    result = CliRunner().invoke(app, ["score", "--pred", str(pred), "--truth", str(truth), "--out", str(out)])

    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    mean = np.mean(list(DICE.values()))
    assert f"foreground │ dice │ {mean:.4g} │ {np.std(list(DICE.values()), ddof=1):.4g} │ {mean:.4g}" in text
    for metric in ("iou", "precision", "recall", "hd95"):
        assert f"│ {metric} │" in text
    assert "│ matched │ 2 │" in text and "│ failed │ 0 │" in text
    assert "│ unmatched_pred │ 1 │" in text and "│ unmatched_truth │ 1 │" in text
    assert f"no reference for {pred / 'stray.tif'}" in text and "no prediction for lonely" in text
    cases = pd.read_parquet(out / "case_metrics.parquet").set_index("case_id")
    assert cases["dice"].to_dict() == pytest.approx(DICE)
    summary = pd.read_parquet(out / "summary.parquet").set_index("metric")
    assert summary.loc["dice", "mean"] == pytest.approx(mean)
    assert pd.read_parquet(out / "errors.parquet").empty


def test_failed_case_exits_3_naming_the_file(folders, tmp_path):
    pred, truth = folders
    (pred / "most.tif").write_bytes(b"corrupt" * 30)

    result = CliRunner().invoke(app, ["score", "--pred", str(pred), "--truth", str(truth), "--out", str(tmp_path / "out")])

    assert result.exit_code == 3, result.output
    text = " ".join(result.stdout.split())
    assert f"failed most: {pred / 'most.tif'}: " in text
    assert "│ failed │ 1 │" in text and "│ scored │ 1 │" in text and "│ dice │ 0.6667 │" in text
    errors = pd.read_parquet(tmp_path / "out" / "errors.parquet")
    assert errors["case_id"].tolist() == ["most"] and errors["pred_uri"].tolist() == [str(pred / "most.tif")]


def test_json_output_with_labels(folders):
    pred, truth = folders

    result = CliRunner().invoke(app, ["score", "--pred", str(pred), "--truth", str(truth), "--labels", '{"lesion": [1, 255]}', "--json"])

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["counts"] == {"matched": 2, "scored": 2, "failed": 0, "unmatched_pred": 1, "unmatched_truth": 1}
    dice = next(r for r in document["summary"] if r["metric"] == "dice")
    assert dice["class"] == "lesion" and dice["mean"] == pytest.approx(np.mean(list(DICE.values())))
    assert document["unmatched_truth"] == ["lonely"] and document["errors"] == []


@pytest.mark.parametrize("labels, message", [("{WT: [1]}", "--labels: not JSON"), ("[1, 2]", "--labels: expected a JSON object"),
                                             ('{"WT": "some"}', "labels: expected class name")])
def test_bad_labels_exit_2_with_one_line(folders, labels, message):
    pred, truth = folders

    result = CliRunner().invoke(app, ["score", "--pred", str(pred), "--truth", str(truth), "--labels", labels])

    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines


def test_help_says_how_cases_match():
    result = CliRunner().invoke(app, ["score", "--help"])

    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Score predicted masks against reference masks" in text and "_seg" in text and "Exit code" in text
