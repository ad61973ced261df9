"""Exclusive classes (hippocampus anterior/posterior): softmax training, per-class scores, label maps out."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fixtures_data import TINY_MODELS, make_manifest, once, tiny_config

from raysegment import storage
from raysegment.evaluate import evaluate
from raysegment.infer import InferConfig, case_key, run_inference
from raysegment.models import read_metadata
from raysegment.readers import read_mask
from raysegment.score import score
from raysegment.train import train

pytestmark = pytest.mark.slow

LABELS = {"anterior": [1], "posterior": [2]}


@pytest.fixture(scope="module")
def exclusive_run(ray_session, tmp_path_factory):
    """A tiny run on generated MSD-layout volumes whose two classes never overlap."""
    def build(root):
        manifest = make_manifest(root, "msd", patients=6, size=32, depth=8)
        config = tiny_config(manifest, root / "run", model_config=TINY_MODELS["unet"], **{
            "data.preprocess.labels": LABELS, "data.preprocess.channels": ["T1", "T2"],
            "data.preprocess.steps": [{"name": "zscore", "scope": "volume"}], "optim.epochs": 6, "optim.lr": 0.01,
            "optim.loss": "bce_dice", "scaling.workers": 1, "scaling.cpus_per_worker": 1})
        return manifest, train(config)
    return once(tmp_path_factory, "exclusive_run", build)


def test_exclusive_classes_train_as_a_softmax_over_background_and_the_classes(exclusive_run):
    _, run = exclusive_run
    meta = read_metadata(run.best_model_uri)
    assert meta["preprocess"]["label_mode"] == "exclusive" and meta["model"]["classes"] == 3
    assert meta["class_names"] == ["anterior", "posterior"]
    history = run.history
    for name in ("val_patient_dice", "val_patient_dice_anterior", "val_patient_dice_posterior", "val_dice_anterior"):
        assert history[name].notna().all()
    assert history["val_patient_dice"].max() > 0.3  # the two halves are told apart, not merged


def test_evaluate_and_infer_score_each_class_and_write_label_maps(exclusive_run, tmp_path):
    manifest, run = exclusive_run
    evaluated = evaluate(run.run_uri, manifest, "test,val", out=str(tmp_path / "eval"))
    assert set(evaluated.cases["class"]) == set(LABELS)

    out = str(tmp_path / "infer")
    result = run_inference(InferConfig(model=run.run_uri, manifest=manifest, out=out, batch_size=4))
    assert result.failed == 0 and result.done > 0
    records = pd.read_parquet(f"{out}/metrics.parquet")
    labeled = records[records["dice"].notna()]
    for _, row in evaluated.cases.iterrows():
        mine = labeled[(labeled["case_id"] == row["case_id"]) & (labeled["class"] == row["class"])]
        assert mine["dice"].iloc[0] == pytest.approx(row["dice"], abs=1e-6)  # infer's masks score what evaluate reports
    for case in records["case_id"].unique():
        mask = read_mask(storage.join(out, "masks", f"{case_key(case)}.nii.gz"))
        labels = mask.array[0]
        assert labels.ndim == 3 and set(np.unique(labels)) <= {0, 1, 2}  # one label map in the source's values
        record = json.loads(storage.read_bytes(storage.join(out, "records", f"{case_key(case)}.json")))
        assert record["mask_encoding"] == "label_map"
        assert record["foreground_ml"]["anterior"] == pytest.approx((labels == 1).sum() * 2.0 / 1000)  # voxels of 1x1x2 mm

    # The label maps are read like any dataset's masks: `raysegment score` against the truth gives infer's figures.
    rescored = score(storage.join(out, "masks"), manifest, labels=LABELS)
    merged = rescored.cases.merge(labeled, on=["case_id", "class"], suffixes=("", "_infer"))
    assert len(merged) == len(labeled)
    np.testing.assert_allclose(merged["dice"], merged["dice_infer"], atol=1e-6)
