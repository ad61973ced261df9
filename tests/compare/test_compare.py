"""``compare`` on two real training runs (one with an evaluation) and an evaluate output."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.compare import compare, read_record
from raysegment.errors import ConfigError
from raysegment.ingest import ingest
from raysegment.models import count_parameters, create_model
from raysegment.sample_data import make_sample_data
from raysegment.train.config import apply_overrides, TrainConfig

pytestmark = pytest.mark.slow

TINY = {"base_channels": 4, "depth": 2}


@pytest.fixture(scope="module")
def runs(ray_session, tmp_path_factory) -> dict:
    """Two one-epoch runs (U-Net, U-Net++) on 32 px LGG slices; the U-Net one evaluated on val."""
    from raysegment.evaluate.run import evaluate
    from raysegment.train.run import train

    root = tmp_path_factory.mktemp("compare")
    make_sample_data(str(root / "data"), "lgg", patients=4, slices=4, size=32)
    manifest = str(root / "manifest.parquet")
    ingest("lgg", str(root / "data"), manifest)
    out = {}
    for name in ("unet", "unetpp"):
        config = apply_overrides(TrainConfig(), {
            "out": str(root / name), "data.manifest": manifest, "model.name": name, "model.config": TINY,
            "data.preprocess.steps": [{"name": "scale"}, {"name": "resize", "size": 32}], "data.augment.enabled": False,
            "optim.epochs": 1, "optim.batch_size": 8, "scaling.cpus_per_worker": 0.25,
            "tracking.tensorboard": False, "tracking.progress": False,
        })
        out[name] = train(config)
    evaluation = evaluate(str(root / "unet"), manifest, "val", out=str(root / "unet" / "evaluation"))
    return {"root": root, "manifest": manifest, "unet": out["unet"], "unetpp": out["unetpp"], "evaluation": evaluation}


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
        assert table.loc[name, "params"] == count_parameters(create_model(name, in_channels=3, classes=1, **TINY))
    # the evaluation inside the U-Net run gives its per-case val scores, HD95 and specificity included
    cases = runs["evaluation"].cases
    assert table.loc["unet", "val_dice"] == pytest.approx(cases["dice"].mean())
    assert table.loc["unet", "val_hd95"] == pytest.approx(pd.to_numeric(cases["hd95"]).mean(), nan_ok=True)
    assert table.loc["unet", "val_specificity"] == pytest.approx(cases["specificity"].mean())
    assert table.loc["unetpp", "val_dice"] == pytest.approx(runs["unetpp"].summary["best"]["val_dice"])
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
