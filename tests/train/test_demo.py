"""``raysegment demo``: sample data -> ingest -> train -> evaluate, reaching a high validation Dice."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from raysegment.cli import app


@pytest.mark.slow
def test_demo_trains_a_good_model(ray_session, tmp_path):
    workdir = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert summary["best"]["val_dice"] >= 0.8
    assert "evaluation of the best model" in result.output and "figure val_best" in result.output
    assert (workdir / "evaluation" / "overlays" / "test_median.png").exists()
    assert (workdir / "run" / "train_curves.png").exists()
