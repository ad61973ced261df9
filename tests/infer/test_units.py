"""Slice datasets are segmented per patient volume: one unit through the pipeline, 3D post-processing, results per slice."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest
import tifffile
from fixtures_data import zscore_inside
from scipy import ndimage
from typer.testing import CliRunner

from raysegment import storage
from raysegment.cli import app
from raysegment.infer import InferConfig, case_key, run_inference
from raysegment.infer.decode import decode_unit
from raysegment.infer.plan import Plan
from raysegment.infer.units import group_units, units_per_call
from raysegment.infer.write import write_unit
from raysegment.models import read_metadata
from raysegment.readers import read_mask

#: What ``lgg_3d_model``'s checkpoint saves (tests/infer/conftest.py).
SAVED = {"threshold": 0.4, "largest_component": True}


def test_slices_of_a_volume_form_one_unit_in_slice_order():
    rows = [("p1_3", "slice", "p1", 2, None), ("p1_1", "slice", "p1", 0, None), ("lone", "slice", None, None, None),
            ("p1", "volume", "p1", None, 6), ("p1_2", "slice", "p1", 1, None)]
    manifest = pd.DataFrame(rows, columns=["case_id", "level", "volume_id", "slice_index", "num_slices"])
    units = group_units(manifest)
    assert list(units["unit"]) == ["volume p1", "case lone", "case p1"]  # a case named like a volume stays apart
    assert [[c["case_id"] for c in json.loads(cases)] for cases in units["cases"]] == [["p1_1", "p1_2", "p1_3"], ["lone"], ["p1"]]
    assert list(units["slices"]) == [3, 1, 6]
    many = pd.concat([units] * 40, ignore_index=True)  # 120 units, 3 slices each (median)
    assert units_per_call(many, 16) == 21  # 64 slices per block, not a batch's 16
    assert units_per_call(many, 128) == 30  # a batch's 128 slices would leave fewer than 4 blocks
    assert units_per_call(many, 16, predictors=8) == 4  # 30 blocks: 4 per predictor (rounded down)
    assert units_per_call(units, 16) == 1  # 3 units: a block each
    assert units_per_call(many.assign(slices=155), 16) == 1  # one volume is a block


@pytest.fixture
def patient(lgg, tmp_path) -> tuple[Plan, pd.DataFrame]:
    """A plan writing to ``tmp_path`` with 3D largest-component cleanup, no resizing (model grid = input grid), and
    the first LGG patient's 4 slice rows, last slice first."""
    metadata = read_metadata(lgg["model"])
    metadata = {**metadata, "preprocess": {**metadata["preprocess"], "steps": [{"name": "scale"}]}, "postprocess": SAVED}
    plan = Plan.build(InferConfig(model=lgg["model"], manifest="m", out=str(tmp_path)), metadata)
    rows = lgg["df"][lgg["df"]["volume_id"] == lgg["df"]["volume_id"].iloc[0]]
    return plan, rows.sort_values("slice_index", ascending=False)


def _predicted(row: dict, prob: np.ndarray) -> dict:
    """``row`` as the predictor passes it on."""
    return {**row, "prob": prob, "predict_seconds": 0.4}


def _mask(out: str, case_id: str) -> np.ndarray:
    return read_mask(storage.join(out, "masks", f"{case_key(case_id)}.tif")).array[0] > 0


def test_write_keeps_the_largest_component_of_the_stacked_slices(patient):
    plan, rows = patient
    (row,) = decode_unit(group_units(rows).iloc[0].to_dict(), plan)
    assert row["status"] == "ok" and row["image"].shape == (4, 3, 64, 64)
    prob = np.zeros((4, 1, 64, 64), np.float32)
    prob[:3, 0, 10:30, 10:30] = 0.9  # one lesion through slices 0-2
    prob[3, 0, 40:44, 40:44] = 0.9  # alone on slice 3 and away from the lesion: its largest 2D component, not the volume's
    prob[1, 0, 50:53, 5:8] = 0.45  # above the checkpoint's threshold (0.4), a second island
    results = write_unit(_predicted(row, prob), plan)

    cases = sorted(rows["case_id"], key=lambda c: int(c.rsplit("_", 1)[1]))
    assert [r["case_id"] for r in results] == cases and {r["status"] for r in results} == {"done"}
    lesion = np.zeros((64, 64), bool)
    lesion[10:30, 10:30] = True
    for k, case in enumerate(cases):
        np.testing.assert_array_equal(_mask(plan.out, case), lesion if k < 3 else np.zeros_like(lesion))
        record = json.loads(results[k]["record"])
        assert record["slices"] == 1 and record["inference_seconds"] == pytest.approx(0.1)
        assert record["foreground_ml"]["tumor"] == pytest.approx(lesion.sum() / 1000 if k < 3 else 0.0)
        assert record["metrics"][0]["class"] == "tumor"  # scored per slice against the slice's own mask


def test_an_unreadable_slice_fails_alone_and_the_others_are_cleaned_together(patient, tmp_path):
    plan, rows = patient
    rows = rows.copy()
    broken = rows["case_id"].iloc[1]  # slice index 2
    rows.at[rows.index[1], "image_uris"] = [str(tmp_path / "gone.tif")]
    (row,) = decode_unit(group_units(rows).iloc[0].to_dict(), plan)
    assert row["image"].shape == (3, 3, 64, 64)
    prob = np.zeros((3, 1, 64, 64), np.float32)
    prob[:2, 0, 10:30, 10:30] = 0.9  # slices 0-1
    prob[2, 0, 40:44, 40:44] = 0.9  # slice 3
    results = {r["case_id"]: r for r in write_unit(_predicted(row, prob), plan)}
    assert len(results) == 4 and results[broken]["status"] == "failed" and results[broken]["stage"] == "read"
    assert "gone.tif" in results[broken]["error"] and not os.path.exists(os.path.join(plan.out, "records", case_key(broken) + ".json"))
    done = [c for c in results if c != broken]
    assert all(results[c]["status"] == "done" for c in done)
    assert [int(_mask(plan.out, c).sum()) for c in sorted(done)] == [400, 400, 0]


@pytest.mark.parametrize("lost", [None, 1])
def test_volume_steps_see_the_readable_slices_of_the_patient_together(patient, tmp_path, lost):
    plan, rows = patient
    plan = dataclasses.replace(plan, preprocess={**plan.preprocess, "steps": [{"name": "zscore", "scope": "volume"}]})
    rows = rows.sort_values("slice_index").reset_index(drop=True)
    if lost is not None:
        rows.at[lost, "image_uris"] = [str(tmp_path / "gone.tif")]
    (row,) = decode_unit(group_units(rows).iloc[0].to_dict(), plan)
    readable = [uris[0] for k, uris in enumerate(rows["image_uris"]) if k != lost]
    stacked = np.stack([np.moveaxis(tifffile.imread(u), -1, 0) for u in readable], axis=-1).astype(np.float64)
    expected = np.stack([zscore_inside(stacked[c]) for c in range(3)])
    assert row["image"].shape == (len(readable), 3, 64, 64)
    np.testing.assert_allclose(np.moveaxis(row["image"], 0, -1), expected, atol=1e-4)


@pytest.mark.slow
def test_slice_cases_are_segmented_per_patient_volume(lgg, lgg_3d_model, tmp_path, ray_session):
    config = InferConfig(model=lgg_3d_model, manifest=lgg["manifest"], out=str(tmp_path / "out"), batch_size=4)
    progress = []
    result = run_inference(config, on_case=lambda row, total: progress.append((row["case_id"], total)))
    cases = list(lgg["df"]["case_id"])
    assert (result.cases, result.done, result.skipped, result.failed, result.slices) == (8, 8, 0, 0, 8)
    assert sorted(progress) == sorted((c, 8) for c in cases)
    assert sorted(os.listdir(tmp_path / "out" / "masks")) == sorted(f"{case_key(c)}.tif" for c in cases)
    assert sorted(os.listdir(tmp_path / "out" / "records")) == sorted(f"{case_key(c)}.json" for c in cases)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert read_metadata(lgg_3d_model)["postprocess"] == SAVED and run["config"]["largest_component"] is None
    assert run["postprocess"] == {**SAVED, "mirror": False}  # the checkpoint's rule, every field spelled out
    metrics = pd.read_parquet(tmp_path / "out" / "metrics.parquet")
    assert sorted(metrics["case_id"]) == sorted(cases) and metrics["dice"].notna().all()
    found = 0
    for _, part in lgg["df"].groupby("volume_id"):
        volume = np.stack([_mask(config.out, c) for c in part.sort_values("slice_index")["case_id"]], axis=-1)
        assert ndimage.label(volume)[1] <= 1  # one 3D component per patient
        found += int(volume.any())
    assert found  # the tiny model does find lesions

    again = run_inference(config)
    assert (again.done, again.skipped, again.failed) == (0, 8, 0)
    first = lgg["df"].sort_values("case_id")["case_id"].iloc[0]
    os.remove(tmp_path / "out" / "records" / f"{case_key(first)}.json")
    redo = run_inference(config)
    assert (redo.done, redo.skipped, redo.failed) == (4, 4, 0)  # its patient's 4 slices are post-processed together again
    assert len(pd.read_parquet(tmp_path / "out" / "metrics.parquet")) == 8


@pytest.mark.slow
def test_cli_overrides_the_checkpoints_post_processing(lgg, lgg_3d_model, tmp_path, ray_session):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["infer", "--model", lgg_3d_model, "--manifest", lgg["manifest"], "--out", str(out),
                                      "--limit", "4", "--no-largest-component", "--save-probabilities", "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["postprocess"] == {"threshold": SAVED["threshold"], "largest_component": False, "mirror": False} and run["done"] == 4
    for case in lgg["df"]["case_id"][:4]:
        prob = tifffile.imread(out / "probabilities" / f"{case_key(case)}.tif").reshape(64, 64)
        np.testing.assert_array_equal(_mask(str(out), case), prob > SAVED["threshold"])  # nothing removed


@pytest.mark.slow
def test_mirrored_masks_are_what_evaluate_scores(lgg, tmp_path, ray_session):
    """Test-time mirroring through infer's pipeline and through evaluate's scorer: the same masks, bit for bit."""
    from raysegment.evaluate import VolumeScorer

    out = str(tmp_path / "out")
    result = run_inference(InferConfig(model=lgg["model"], manifest=lgg["manifest"], out=out, batch_size=16, mirror=True,
                                       largest_component=True))
    assert result.failed == 0 and json.loads((tmp_path / "out" / "run.json").read_text())["postprocess"]["mirror"] is True
    scorer = VolumeScorer(lgg["model"], {"mirror": True, "largest_component": True}, batch_size=16)
    plain = VolumeScorer(lgg["model"], {"largest_component": True}, batch_size=16)
    differs = False
    for _, part in lgg["df"].groupby("volume_id"):
        rows, volume = scorer.predict_volume(part.to_dict(orient="records"))
        written = np.stack([_mask(out, row["case_id"]) for row in rows], axis=-1)
        np.testing.assert_array_equal(volume.prediction[0], written)
        differs |= not np.array_equal(plain.predict_volume(part.to_dict(orient="records"))[1].prediction, volume.prediction)
    assert differs  # mirroring changed something, so the comparison above tested it
