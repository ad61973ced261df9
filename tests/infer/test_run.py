"""End-to-end runs on local files: one output per case, metrics checked by hand, verified resume."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from raysegment import storage
from raysegment.errors import ConfigError
from raysegment.infer import InferConfig, case_key, run_inference
from raysegment.readers import read_mask

pytestmark = pytest.mark.slow


def _masks(out: str) -> dict[str, np.ndarray]:
    return {storage.basename(u): read_mask(u).array for u in storage.list_files(storage.join(out, "masks"))}


def test_every_case_has_exactly_one_mask_and_record(reference_run, lgg_hostile_manifest):
    result, out = reference_run["result"], reference_run["out"]
    cases = pd.read_parquet(lgg_hostile_manifest)["case_id"].tolist()
    assert (result.cases, result.done, result.skipped, result.failed, result.exit_code) == (12, 12, 0, 0, 0)
    assert sorted(os.listdir(os.path.join(out, "masks"))) == sorted(f"{case_key(c)}.tif" for c in cases)
    assert sorted(os.listdir(os.path.join(out, "records"))) == sorted(f"{case_key(c)}.json" for c in cases)
    run = json.loads(storage.read_bytes(storage.join(out, "run.json")))
    assert run["done"] == 12 and run["slices"] == 12 and run["slices_per_second"] > 0
    assert run["model"]["id"].startswith("unet-") and run["config"]["manifest"] == lgg_hostile_manifest
    assert pd.read_parquet(os.path.join(out, "errors.parquet")).empty


def test_path_like_case_ids_stay_inside_the_output(reference_run, hostile_ids):
    out = reference_run["out"]
    written = [os.path.join(d, f) for d, _, files in os.walk(out) for f in files]
    assert all(os.path.realpath(p).startswith(os.path.realpath(out) + os.sep) for p in written)
    assert not os.path.exists(os.path.join(out, "etc")) and not os.path.exists("/abs")
    keys = [case_key(c) for c in hostile_ids]
    assert len(set(keys)) == 4 and all(os.path.exists(os.path.join(out, "masks", k + ".tif")) for k in keys)
    metrics = pd.read_parquet(os.path.join(out, "metrics.parquet"))
    assert set(hostile_ids) <= set(metrics["case_id"])


def test_metrics_match_a_dice_computed_by_hand(reference_run, lgg):
    metrics = pd.read_parquet(os.path.join(reference_run["out"], "metrics.parquet")).set_index("case_id")
    assert metrics.loc[lgg["df"]["case_id"], "dice"].notna().all()
    for row in lgg["df"].itertuples():
        pred = read_mask(os.path.join(reference_run["out"], "masks", f"{case_key(row.case_id)}.tif")).array[0] > 0
        truth = read_mask(row.mask_uri).array[0] > 0
        assert pred.shape == truth.shape == (64, 64)
        dice = 2 * (pred & truth).sum() / (pred.sum() + truth.sum()) if pred.sum() + truth.sum() else 1.0
        assert metrics.loc[row.case_id, "dice"] == pytest.approx(dice)
        assert metrics.loc[row.case_id, "foreground_ml"] == pytest.approx(pred.sum() / 1000.0)  # 1 mm^3 pixels
    assert metrics["dice"].mean() > 0.3  # the tiny model did learn the lesions
    assert set(metrics["model_id"]) == {reference_run["result"].run["model"]["id"]}


def test_split_pipeline_writes_what_the_fused_one_does(reference_run, tmp_path):
    """A local CPU run fuses decoding and writing into its predictors; a GPU or cluster run splits them into tasks."""
    assert reference_run["result"].run["pipeline"] == "fused"
    out = str(tmp_path / "split")
    split = run_inference(reference_run["config"].model_copy(update={"out": out, "fuse": False}))
    assert split.run["pipeline"] == "split" and (split.done, split.failed) == (12, 0)
    reference, again = _masks(reference_run["out"]), _masks(out)
    assert again.keys() == reference.keys() and all(np.array_equal(again[k], reference[k]) for k in reference)
    columns = ["case_id", "class", "dice", "foreground_ml", "model_id"]
    metrics = [pd.read_parquet(os.path.join(o, "metrics.parquet"))[columns].sort_values("case_id", ignore_index=True)
               for o in (reference_run["out"], out)]
    pd.testing.assert_frame_equal(*metrics)


def test_rerun_redoes_only_cases_that_are_not_verifiably_complete(reference_run, tmp_path):
    out = str(tmp_path / "out")
    shutil.copytree(reference_run["out"], out)
    masks = sorted(os.listdir(os.path.join(out, "masks")))
    with open(os.path.join(out, "masks", masks[0]), "ab") as f:
        f.write(b"\0")  # damaged after its record was written
    os.remove(os.path.join(out, "records", masks[1].replace(".tif", ".json")))  # killed between mask and record
    config = reference_run["config"].model_copy(update={"out": out})
    result = run_inference(config)
    # Both cases are slices of the first patient: its 4 slices are redone together (their post-processing is 3D).
    assert (result.done, result.skipped, result.failed) == (4, 8, 0)
    reference = _masks(reference_run["out"])
    again = _masks(out)
    assert again.keys() == reference.keys() and all(np.array_equal(again[k], reference[k]) for k in reference)
    assert len(pd.read_parquet(os.path.join(out, "metrics.parquet"))) == 12  # skipped cases keep their metrics

    redo = run_inference(config.model_copy(update={"overwrite": True, "limit": 2}))
    assert (redo.cases, redo.done, redo.skipped) == (2, 2, 0)


def test_a_night_without_new_scans_is_a_clean_empty_run(lgg, tmp_path, ray_session):
    from raysegment.manifest import to_table, write_manifest

    empty = str(tmp_path / "empty.parquet")
    write_manifest(to_table(pd.DataFrame({"case_id": pd.Series([], dtype=object)})), empty)
    leftover = tmp_path / "out" / "masks" / ".tmp-killed.nii.gz"  # from last night's killed run
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a mask")
    os.utime(leftover, (0, 0))
    result = run_inference(InferConfig(model=lgg["model"], manifest=empty, out=str(tmp_path / "out")))
    assert (result.cases, result.exit_code) == (0, 0)
    assert not leftover.exists()
    assert pd.read_parquet(tmp_path / "out" / "errors.parquet").columns.tolist() == ["case_id", "stage", "error"]
    assert json.loads((tmp_path / "out" / "run.json").read_text())["cases"] == 0


def test_predictors_that_take_every_local_cpu_fail_fast(lgg, tmp_path, ray_session, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # Two 1-CPU predictors on the 2-CPU test instance would leave Ray Data no CPU to read scans with.
    config = InferConfig(model=lgg["model"], manifest=lgg["manifest"], out=str(tmp_path / "out"), workers=2, cpus_per_worker=1)
    with pytest.raises(ConfigError, match=r"--workers 2 x --cpus-per-worker 1 = 2 CPUs.*of the 2 local CPUs") as info:
        run_inference(config)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_local_decode_and_write_each_get_half_the_cpus_the_predictors_leave(tmp_path, ray_session, monkeypatch):
    from raysegment.infer.run import IoTasks, io_tasks

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # 2 local CPUs. Sharing the spare ones, Ray Data starved writing and started a worker per queued task.
    config = lambda **kw: InferConfig(model="m.pt", manifest="m.parquet", out=str(tmp_path), **kw)  # noqa: E731
    assert io_tasks(config(workers=1, cpus_per_worker=1)) == IoTasks(cpus=0.5, limit=1)
    assert io_tasks(config(workers=2, cpus_per_worker=0.75)) == IoTasks(cpus=0.25, limit=1)
    assert io_tasks(config()) == IoTasks(cpus=0.25, limit=1)  # the default on 2 CPUs: 2 predictors x 0.75 CPU
    assert io_tasks(config(workers=1, cpus_per_worker=0.5)) == IoTasks(cpus=0.5, limit=1)
    assert io_tasks(config(workers=1, cpus_per_worker=0.25)) == IoTasks(cpus=0.5, limit=1)
    # A cluster's autoscaler adds CPUs for whatever is queued: no cap there.
    assert io_tasks(config(address="ray://head:10001")) == IoTasks(cpus=0.5, limit=None)


def test_metrics_table_has_a_row_per_case_and_class_in_case_order_with_or_without_ground_truth():
    from raysegment.infer.run import metrics_table

    records = [{"case_id": "b", "foreground_ml": {"wt": 1.0, "tc": 2.0}, "inference_seconds": 0.1, "model_id": "m"},  # no ground truth
               {"case_id": "a", "foreground_ml": {"wt": 3.0, "tc": 0.5}, "inference_seconds": 0.2, "model_id": "m",
                "metrics": [{"class": "tc", "dice": 0.5, "hd95": None}, {"class": "wt", "dice": 0.7, "hd95": 3.0}]}]
    table = metrics_table(json.dumps(r) for r in records)
    assert list(table.columns) == ["case_id", "class", "dice", "hd95", "foreground_ml", "inference_seconds", "model_id"]
    assert table[["case_id", "class", "foreground_ml"]].values.tolist() == [["a", "wt", 3.0], ["a", "tc", 0.5], ["b", "wt", 1.0], ["b", "tc", 2.0]]
    assert table["dice"].tolist()[:2] == [0.7, 0.5] and table["dice"].iloc[2:].isna().all()
    assert list(metrics_table([]).columns) == ["case_id", "class", "foreground_ml", "inference_seconds", "model_id"]
