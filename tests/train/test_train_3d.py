"""A 3D model end to end: planned from the volumes, trained on patches cut in Ray Data, validated,
evaluated and run by ``infer`` through the same sliding-window prediction, masks back on each scan's grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import yaml
from fixtures_data import TINY_MODELS, once

from raysegment import storage
from raysegment.evaluate import evaluate
from raysegment.infer import InferConfig, case_key, run_inference
from raysegment.manifest import read_manifest
from raysegment.models import read_metadata
from raysegment.sample_data import SAMPLE_LABELS
from raysegment.score import score
from raysegment.train import load_config, train

pytestmark = pytest.mark.slow

#: The sample volumes are 24x24x12 at 1x1x2 mm; a coarser target spacing makes the resampling and its inverse run.
SPACING = [1.5, 1.5, 2.0]


@pytest.fixture(scope="module")
def run_3d(ray_session, msd_manifest, tmp_path_factory):
    def build(root):
        config = load_config("jobs/hippocampus_3d.yaml", {
            "out": str(root / "run"), "data.manifest": msd_manifest,
            "data.preprocess.labels": {name: [k + 1] for k, name in enumerate(SAMPLE_LABELS)},
            "data.preprocess.spacing": SPACING, "data.patches_per_volume": 2,
            "model.config": {**TINY_MODELS["dynunet"], "deep_supervision": True},
            "optim.epochs": 2, "optim.batch_size": 2, "scaling.workers": 1, "scaling.cpus_per_worker": 1,
            "scaling.gpus_per_worker": 0, "tracking.progress": False, "tracking.tensorboard": False,
        })
        return train(config)

    return once(tmp_path_factory, "run-3d", build)


def test_the_plan_is_saved_with_the_model(run_3d):
    meta = read_metadata(run_3d.model_uri)
    pre = meta["preprocess"]
    assert pre["dims"] == 3 and pre["spacing"] == SPACING
    # Patch planned from the median shape at 1.5 x 1.5 x 2 mm (16 x 16 x 12), rounded to the poolings.
    assert pre["patch_size"] == [16, 16, 12]
    assert meta["model"]["config"]["patch_size"] == pre["patch_size"] and meta["model"]["config"]["spacing"] == SPACING
    assert meta["model"]["classes"] == 3  # background + two exclusive classes
    saved = yaml.safe_load(storage.read_bytes(storage.join(run_3d.run_uri, "config.yaml")))
    assert saved["data"]["preprocess"]["patch_size"] == pre["patch_size"]
    assert list(run_3d.history["epoch"]) == [1, 2] and (run_3d.history["images_per_s"] > 0).all()
    # The loop times its wait for each ready batch: a share of the training time.
    assert ((run_3d.history["data_wait_s"] > 0) & (run_3d.history["data_wait_share"] < 1)).all()
    assert run_3d.summary["data_wait_share"] == pytest.approx(run_3d.history["data_wait_share"].mean())
    assert {"val_patient_dice_anterior", "val_patient_dice_posterior"} <= set(run_3d.history.columns)


def test_evaluate_reports_the_scores_of_the_masks_infer_writes(run_3d, msd_manifest, tmp_path):
    """One prediction path: evaluate's per-case figures are ``raysegment score`` of infer's masks, on the scans' own grids."""
    df = read_manifest(msd_manifest)
    labeled = df[df["mask_uri"].notna()]
    evaluation = evaluate(run_3d.run_uri, msd_manifest, ["val", "test"], str(tmp_path / "eval"))
    result = run_inference(InferConfig(model=run_3d.run_uri, manifest=msd_manifest, out=str(tmp_path / "infer"),
                                       workers=1, cpus_per_worker=1))
    assert result.failed == 0 and result.done == len(df)  # unlabeled cases get masks too
    labels = {name: [k + 1] for k, name in enumerate(SAMPLE_LABELS)}
    scored = score(str(tmp_path / "infer" / "masks"), msd_manifest, labels=labels).cases
    reported = evaluation.cases.set_index(["case_id", "class"])["dice"]
    rescored = scored.set_index(["case_id", "class"])["dice"].reindex(reported.index)
    np.testing.assert_allclose(rescored, reported, atol=1e-9)
    for row in labeled.itertuples():
        mask = nib.load(tmp_path / "infer" / "masks" / f"{case_key(row.case_id)}.nii.gz")
        truth = nib.load(row.mask_uri)
        assert mask.shape == truth.shape  # back on the scan's grid, from 16 x 16 x 12 resampled voxels
        np.testing.assert_allclose(mask.affine, truth.affine)
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2}  # one label map in the source's values
