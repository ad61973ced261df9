"""Real MSD hippocampus volumes: exclusive classes trained on a few cases, label maps written for held-out ones."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import REAL_DATA

from raysegment import storage
from raysegment.infer import InferConfig, case_key, run_inference
from raysegment.ingest import ingest
from raysegment.manifest import read_manifest, write_manifest
from raysegment.models import read_metadata
from raysegment.score import score
from raysegment.train import load_config, train

pytestmark = pytest.mark.slow

HIPPOCAMPUS = REAL_DATA / "hippocampus"
#: Cases trained on, selected on and held out (of the 40, in a seeded order).
TRAIN, VAL, TEST = 8, 2, 3


@pytest.fixture(scope="module")
def hippocampus_run(ray_session, tmp_path_factory):
    if not (HIPPOCAMPUS / "dataset.json").is_file():
        pytest.skip(f"real MSD hippocampus cases not found at {HIPPOCAMPUS} (a development checkout has them in ../shared/data)")
    root = tmp_path_factory.mktemp("hippocampus")
    result = ingest("msd", str(HIPPOCAMPUS), str(root / "all.parquet"))
    order = np.random.default_rng(0).permutation(sorted(result.manifest["case_id"]))
    split = dict.fromkeys(order[:TRAIN], "train") | dict.fromkeys(order[TRAIN:TRAIN + VAL], "val") | \
        dict.fromkeys(order[TRAIN + VAL:TRAIN + VAL + TEST], "test")
    chosen = result.manifest[result.manifest["case_id"].isin(split)]
    manifest = str(root / "manifest.parquet")
    write_manifest(chosen.assign(split=chosen["case_id"].map(split)), manifest)
    config = load_config(None, {
        "out": str(root / "run"), "data.manifest": manifest, "data.preprocess.labels": result.labels,
        # Axial slices of about 35 x 50 voxels at 1 mm, z-scored over each volume, padded to 64.
        "data.preprocess.steps": [{"name": "zscore", "region": "nonzero", "scope": "volume"}, {"name": "center_crop", "size": 64}],
        "data.preprocess.slice_selection": "foreground", "data.augment.enabled": False,
        "model.name": "unet", "model.config": {"base_channels": 8, "depth": 3}, "optim.epochs": 12, "optim.batch_size": 16,
        "scaling.workers": 1, "scaling.cpus_per_worker": 1, "scaling.gpus_per_worker": 0,
        "tracking.progress": False, "tracking.tensorboard": False,
    })
    return manifest, result.labels, train(config), root


def test_anterior_and_posterior_are_learned_as_exclusive_classes(hippocampus_run):
    _, labels, run, _ = hippocampus_run
    assert labels == {"Anterior": [1], "Posterior": [2]}
    meta = read_metadata(run.best_model_uri)
    assert meta["preprocess"]["label_mode"] == "exclusive" and meta["model"]["classes"] == 3
    assert run.history["val_patient_dice_Anterior"].max() > 0.5 and run.history["val_patient_dice_Posterior"].max() > 0.5


def test_held_out_cases_get_label_maps_on_their_own_grid(hippocampus_run):
    manifest, labels, run, root = hippocampus_run
    test = read_manifest(manifest).query("split == 'test'")
    write_manifest(test, str(root / "test.parquet"))
    out = str(root / "masks")
    result = run_inference(InferConfig(model=run.run_uri, manifest=str(root / "test.parquet"), out=out, batch_size=8))
    assert (result.done, result.failed) == (TEST, 0)
    for row in test.itertuples():
        source = nib.load(row.image_uris[0])
        mask = nib.load(storage.join(out, "masks", f"{case_key(row.case_id)}.nii.gz"))
        values = np.asarray(mask.dataobj)
        assert mask.shape == source.shape and np.allclose(mask.affine, source.affine)
        assert set(np.unique(values)) <= {0, 1, 2} and {1, 2} <= set(np.unique(values))  # both found, in the dataset's values
    metrics = pd.read_parquet(f"{out}/metrics.parquet")
    assert (metrics.groupby("class")["dice"].mean() > 0.5).all()  # an empty prediction scores 0
    rescored = score(storage.join(out, "masks"), str(root / "test.parquet"), labels=labels).cases
    merged = rescored.merge(metrics, on=["case_id", "class"], suffixes=("", "_infer"))
    assert len(merged) == 2 * TEST
    np.testing.assert_allclose(merged["dice"], merged["dice_infer"], atol=1e-6)
