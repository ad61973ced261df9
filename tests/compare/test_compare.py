"""``compare`` on two real training runs (one with an evaluation) and an evaluate output."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.compare import compare, read_record
from raysegment.errors import ConfigError
from raysegment.models import count_parameters, create_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(trained_job, lgg_manifest, tmp_path_factory) -> dict:
    """Copies of two trained runs (U-Net, U-Net++ on 32 px LGG slices); the U-Net one evaluated on val.

    Copies, so the evaluation written inside a run stays out of the session's shared runs.
    """
    from raysegment.evaluate.run import evaluate

    root = tmp_path_factory.mktemp("compare")
    out = {"root": root}
    for name in ("unet", "unetpp"):
        trained = trained_job(name)
        shutil.copytree(trained.run, root / name)
        out[name] = trained.resumed
    out["evaluation"] = evaluate(str(root / "unet"), lgg_manifest, "val", out=str(root / "unet" / "evaluation"))
    return out


def test_table_rows_are_models_and_columns_metrics(runs, tmp_path):
    result = compare([str(runs["root"] / "unet"), str(runs["root"] / "unetpp")], str(tmp_path / "cmp"))
    table = result.table
    assert list(table.index) == ["unet", "unetpp"]
    assert list(table["kind"]) == ["train", "train"]
    for name in ("unet", "unetpp"):
        best = runs[name].summary["best"]
        assert table.loc[name, "train_dice"] == pytest.approx(best["train_dice"])
        assert table.loc[name, "train_time_s"] == pytest.approx(runs[name].summary["train_time_s"])
        assert table.loc[name, "images_per_s"] == pytest.approx(runs[name].summary["images_per_s"])
        model = runs[name].summary["model"]
        assert table.loc[name, "params"] == count_parameters(create_model(name, in_channels=3, classes=1, **model["config"]))
    # the evaluation inside the U-Net run gives its per-case val scores, HD95 and specificity included
    cases = runs["evaluation"].cases
    assert table.loc["unet", "val_dice"] == pytest.approx(cases["dice"].mean())
    assert table.loc["unet", "val_hd95"] == pytest.approx(pd.to_numeric(cases["hd95"]).mean(), nan_ok=True)
    assert table.loc["unet", "val_specificity"] == pytest.approx(cases["specificity"].mean())
    assert table.loc["unet", "val_patient_dice"] == pytest.approx(runs["evaluation"].volumes["dice"].mean())
    assert table.loc["unet", "val_empty_share"] == pytest.approx(runs["evaluation"].overview.set_index("split").loc["val", "empty_share"])
    assert table.loc["unetpp", "val_dice"] == pytest.approx(runs["unetpp"].summary["best"]["val_dice"])
    assert table.loc["unetpp", "val_patient_dice"] == pytest.approx(runs["unetpp"].summary["best"]["val_patient_dice"])
    assert pd.isna(table.loc["unetpp", "val_hd95"])  # not evaluated: training reports no distances
    saved = pd.read_parquet(tmp_path / "cmp" / "comparison.parquet").set_index("name")
    pd.testing.assert_frame_equal(saved, table, check_dtype=False, check_names=False)


def test_figures_and_markdown_report(runs, tmp_path):
    result = compare([str(runs["root"] / "unet"), str(runs["root"] / "unetpp")], str(tmp_path / "cmp"))
    out = tmp_path / "cmp"
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    overlays = sorted(p.name for p in (out / "overlays").iterdir())
    assert overlays == sorted(f"unet_{key}.png" for key in runs["evaluation"].figures)
    report = (out / "report.md").read_text()
    assert "| model |" in report and "| unet |" in report and "| unetpp |" in report
    assert "![scores](comparison.png)" in report
    for name in overlays:
        assert f"(overlays/{name})" in report
    assert result.report_uri == str(out / "report.md")


def test_training_curves_of_the_runs_overlaid(runs, tmp_path):
    from raysegment import plots

    out = tmp_path / "cmp"
    result = compare([str(runs["root"] / "unet"), str(runs["root"] / "unetpp"), str(runs["root"] / "unet" / "evaluation")], str(out))
    assert list(result.histories) == ["unet", "unetpp"]  # the evaluation output has no training run
    for name in ("unet", "unetpp"):
        pd.testing.assert_frame_equal(result.histories[name], pd.read_parquet(runs["root"] / name / "history.parquet"))
    assert result.figures["curves"] == str(out / "curves.png") and (out / "curves.png").stat().st_size > 20_000
    assert "![training curves](curves.png)" in (out / "report.md").read_text()
    fig = plots.runs_figure(result.histories)
    try:
        panels = {ax.get_title(): {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()} for ax in fig.get_axes()}
    finally:
        plots._pyplot().close(fig)
    assert panels["validation loss"] == {name: list(result.histories[name]["val_loss"]) for name in ("unet", "unetpp")}
    assert {"train accuracy", "validation precision", "validation recall", "validation patient_dice"} <= set(panels)
    assert all(set(lines) == {"unet", "unetpp"} for lines in panels.values())  # one line per run in every panel
    # beside the scores, the loss: training's for the U-Net++, the evaluation's (per case) for the evaluated U-Net
    assert result.table.loc["unetpp", "val_loss"] == pytest.approx(runs["unetpp"].summary["best"]["val_loss"])
    assert result.table.loc["unet", "val_loss"] == pytest.approx(runs["evaluation"].cases["loss"].mean())
    assert result.table.loc["unetpp", "train_accuracy"] == pytest.approx(runs["unetpp"].summary["best"]["train_accuracy"])


def test_evaluate_output_and_cli(runs, tmp_path):
    record = read_record(str(runs["root"] / "unet" / "evaluation"))
    assert record.kind == "evaluate" and record.metrics["val_dice"] == pytest.approx(runs["evaluation"].cases["dice"].mean())
    result = CliRunner().invoke(app, ["compare", str(runs["root"] / "unetpp"), str(runs["root"] / "unet" / "evaluation"),
                                      "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert "unetpp" in result.output and "evaluation" in result.output and (tmp_path / "cli" / "report.md").exists()


def test_unknown_folder_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a train run"):
        read_record(str(tmp_path / "empty"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "summary.json").write_text(json.dumps({"x": 1}))
    with pytest.raises(ConfigError, match="not written by raysegment"):
        read_record(str(tmp_path / "other"))
