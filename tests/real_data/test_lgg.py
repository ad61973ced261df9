"""Real LGG scans (TCGA-LGG, Kaggle layout): exact ingest counts, a short training that finds real
tumours in held-out patients, and inference masks that score exactly what ``evaluate`` reports."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from real_data.conftest import TEST

from raysegment.ingest import ingest
from raysegment.manifest import read_manifest, write_manifest

#: Images (= masks) and slices with tumour of the published set, by patients in the folder.
PUBLISHED_COUNTS = {20: (716, 240), 110: (3929, 1373)}


def test_ingest_counts_every_image_mask_positive_slice_and_patient(real_lgg, tmp_path):
    result = ingest("lgg", str(real_lgg), str(tmp_path / "lgg.parquet"))
    df = result.manifest
    # Independently, from the files themselves.
    masks = sorted(real_lgg.glob("*/*_mask.tif"))
    images = [p for p in real_lgg.glob("*/*.tif") if not p.stem.endswith("_mask")]
    positive = sum(bool(tifffile.imread(p).any()) for p in masks)
    patients = len({p.parent.name for p in masks})
    assert (len(df), int(df["mask_uri"].notna().sum()), int(df["has_foreground"].sum()), df["patient_id"].nunique()) == \
        (len(images), len(masks), positive, patients)
    assert len(images) == len(masks)
    if patients in PUBLISHED_COUNTS:
        assert (len(df), positive) == PUBLISHED_COUNTS[patients]
    assert result.problems == []
    assert (df["level"] == "slice").all() and df["volume_id"].notna().all()


@pytest.mark.slow
def test_short_training_finds_the_tumours_of_held_out_patients(real_lgg_eval):
    volumes = real_lgg_eval.volumes
    assert volumes["case_id"].nunique() == TEST
    # An empty mask scores Dice 0 on every patient with a tumour (all of them here) and 1 on the others.
    baseline = (volumes["volume_true"] == 0).astype(float)
    assert (volumes["dice"] > baseline).all(), volumes[["case_id", "dice", "volume_true", "volume_pred"]]
    assert volumes["dice"].mean() >= baseline.mean() + 0.3
    overview = real_lgg_eval.overview.set_index("split").loc["test"]
    assert overview["patient_dice"] == pytest.approx(volumes["dice"].mean())
    assert 0 < overview["empty_share"] < 1


@pytest.mark.slow
def test_inference_writes_masks_that_score_what_evaluate_reports(ray_session, real_lgg_run, real_lgg_eval, real_lgg_manifest, tmp_path):
    from raysegment.infer import InferConfig, run_inference
    from raysegment.infer.layout import case_key
    from raysegment.metrics import case_metrics
    from raysegment.readers import read_mask
    from raysegment.score import score

    df = read_manifest(real_lgg_manifest)
    test_only = str(tmp_path / "test.parquet")
    write_manifest(df[df["split"] == "test"], test_only)
    result = run_inference(InferConfig(model=real_lgg_run.model_uri, manifest=test_only, out=str(tmp_path / "out"),
                                       workers=1, cpus_per_worker=1))
    assert result.failed == 0 and result.done == (df["split"] == "test").sum()
    written = result.metrics.set_index("case_id")
    reported = real_lgg_eval.cases.set_index("case_id")
    assert sorted(written.index) == sorted(reported.index)
    np.testing.assert_allclose(written.loc[reported.index, "dice"], reported["dice"], atol=1e-9)
    # The masks on storage, scored again from the files by `raysegment score`: the same figures.
    scored = score(str(tmp_path / "out" / "masks"), test_only).cases.set_index("case_id")
    assert sorted(scored.index) == sorted(reported.index)
    np.testing.assert_allclose(scored.loc[reported.index, "dice"], reported["dice"], atol=1e-9)
    # ... and by hand, for a few of them.
    rows = df[df["split"] == "test"].set_index("case_id")
    for case_id in rows.index[::7]:
        mask = tifffile.imread(tmp_path / "out" / "masks" / f"{case_key(case_id)}.tif")
        truth = read_mask(rows.loc[case_id, "mask_uri"]).array
        rescored = case_metrics(mask.reshape(truth.shape) > 0, truth > 0, (1.0, 1.0), ["tumor"])[0]
        assert rescored["dice"] == pytest.approx(reported.loc[case_id, "dice"], abs=1e-9)
