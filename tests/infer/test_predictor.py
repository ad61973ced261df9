"""The predictor actor class, called on plain batches as Ray's batch-inference example tests it."""

from __future__ import annotations

import numpy as np
import torch

from raysegment.infer.config import InferConfig
from raysegment.infer.decode import unit_row
from raysegment.infer.plan import Plan
from raysegment.infer.predictor import Predictor
from raysegment.models import load_model, read_metadata


def _batch(rows):
    batch = {k: np.array([r[k] for r in rows]) for k in ("unit", "status", "stage", "error", "meta")}
    batch["image"] = np.empty(len(rows), dtype=object)
    for i, r in enumerate(rows):
        batch["image"][i] = r["image"]
    return batch


def test_units_are_split_back_and_failures_isolated(lgg):
    plan = Plan.build(InferConfig(model=lgg["model"], manifest="m", out="o", batch_size=3), read_metadata(lgg["model"]))
    rng = np.random.default_rng(0)
    volume = rng.random((5, 3, 32, 32), dtype=np.float32)
    single = rng.random((1, 3, 32, 32), dtype=np.float32)
    wrong = rng.random((2, 5, 32, 32), dtype=np.float32)  # 5 channels for a 3-channel model
    rows = [unit_row("vol", "ok", [], image=volume), unit_row("bad", "failed", [], stage="read", error="x.tif: corrupt"),
            unit_row("one", "ok", [], image=single), unit_row("wrong", "ok", [], image=wrong)]
    out = Predictor(plan)(_batch(rows))
    assert list(out["status"]) == ["ok", "failed", "ok", "failed"]
    assert out["stage"][3] == "predict" and "wrong" in out["error"][3] and out["error"][1] == "x.tif: corrupt"
    assert out["prob"][0].shape == (5, 1, 32, 32) and out["prob"][2].shape == (1, 1, 32, 32)
    model, _ = load_model(lgg["model"])
    with torch.inference_mode():
        expected = torch.sigmoid(model(torch.from_numpy(volume))).numpy()
    np.testing.assert_allclose(out["prob"][0], expected, atol=1e-5)
    assert "image" not in out


def test_predictor_runs_as_many_threads_as_cpus_it_reserves(lgg):
    config = InferConfig(model=lgg["model"], manifest="m", out="o", cpus_per_worker=1.5)
    plan = Plan.build(config, read_metadata(lgg["model"]))
    assert plan.threads == 2  # Ray's OMP_NUM_THREADS would give a fractional share 1
    before = torch.get_num_threads()
    try:
        Predictor(plan)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_bf16_predictions_stay_close_to_full_precision(lgg):
    rng = np.random.default_rng(1)
    rows = [unit_row("vol", "ok", [], image=rng.random((4, 3, 32, 32), dtype=np.float32))]
    probs = {}
    for amp in ("none", "bf16"):
        plan = Plan.build(InferConfig(model=lgg["model"], manifest="m", out="o", amp=amp), read_metadata(lgg["model"]))
        probs[amp] = Predictor(plan)(_batch(rows))["prob"][0]
    assert probs["bf16"].dtype == np.float32
    assert not np.array_equal(probs["bf16"], probs["none"])  # bf16 really ran
    np.testing.assert_allclose(probs["bf16"], probs["none"], atol=0.05)
