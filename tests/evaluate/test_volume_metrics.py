"""Slice datasets (LGG) are scored per slice and per patient volume, the slices stacked in 3D."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures_data import zscore_inside

from raysegment.manifest import read_manifest

pytestmark = pytest.mark.slow


def test_patient_volumes_pool_their_slices(lgg_scores, lgg_eval):
    out, result = lgg_scores
    labeled = read_manifest(lgg_eval["manifest"])
    labeled = labeled[labeled["mask_uri"].notna()]
    assert sorted(result.volumes["case_id"]) == sorted(labeled["volume_id"].unique())
    assert set(result.cases["case_id"]) == set(labeled["case_id"])  # the per-slice rows are all still there
    for volume_id, volume in result.volumes.set_index("case_id").iterrows():
        slices = result.cases[result.cases["case_id"].isin(labeled.loc[labeled["volume_id"] == volume_id, "case_id"])]
        # Independent reference: Dice of the stacked volume = Dice of the slices' pooled counts.
        tp = (slices["dice"] * (slices["volume_pred"] + slices["volume_true"]) / 2).sum()
        size = slices["volume_pred"].sum() + slices["volume_true"].sum()
        assert volume["dice"] == pytest.approx(2 * tp / size if size else 1.0, abs=1e-6)
        assert volume["volume_true"] == pytest.approx(slices["volume_true"].sum() / 1000)  # mm^2 x 1 slice -> mL
        assert (volume["slices"], volume["dimensions"]) == (len(slices), 3)
    stored = pd.read_parquet(out / "volume_metrics.parquet")
    pd.testing.assert_frame_equal(stored, result.volumes, check_dtype=False)
    assert set(result.volume_summary["split"]) == {"train", "val", "test"}


def test_overview_puts_the_per_patient_dice_beside_the_per_slice_mean(lgg_scores):
    out, result = lgg_scores
    overview = result.overview.set_index("split")
    for split, part in result.cases.groupby("split"):
        volumes = result.volumes[result.volumes["split"] == split]
        row = overview.loc[split]
        assert row["patient_dice"] == pytest.approx(volumes["dice"].mean())
        assert row["patient_median"] == pytest.approx(volumes["dice"].median())
        assert row["case_dice"] == pytest.approx(part["dice"].mean())
        assert row["empty_share"] == pytest.approx((part["volume_true"] == 0).mean())
        assert (row["patients"], row["cases"]) == (len(volumes), len(part))
    stored = pd.read_json(out / "overview.json").set_index("split")
    pd.testing.assert_frame_equal(stored, overview, check_dtype=False)


def test_evaluate_post_processes_each_patient_in_3d(lgg_eval, tmp_path):
    """The largest component is taken over the stacked slices, and every slice is scored from that stack."""
    from scipy import ndimage

    from raysegment.evaluate import VolumeScorer
    from raysegment.metrics import case_metrics

    manifest = read_manifest(lgg_eval["manifest"])
    raw = VolumeScorer(lgg_eval["full"], {"largest_component": False})
    kept = VolumeScorer(lgg_eval["full"], {"largest_component": True})
    # A patient whose raw prediction has several 3D components, so the rule has something to remove.
    for _, volume in manifest.groupby("volume_id"):
        rows = volume.to_dict(orient="records")
        ordered, plain = raw.predict_volume(rows)
        labels, count = ndimage.label(plain.prediction[0])  # independent: scipy on the stacked raw prediction
        if count > 1:
            break
    assert count > 1, "no patient with several predicted components: the fixture model changed"
    _, cleaned = kept.predict_volume(rows)
    expected = labels == np.bincount(labels.ravel())[1:].argmax() + 1
    assert expected.sum() < plain.prediction[0].sum()
    np.testing.assert_array_equal(cleaned.prediction[0], expected)
    scores = pd.DataFrame(kept.score_volume(rows))
    per_slice = scores[scores["level"] == "case"].set_index("case_id")
    for k, row in enumerate(ordered):
        reference = case_metrics(expected[None, ..., k], plain.truth[..., k], (1.0, 1.0), ["tumor"])[0]["dice"]
        assert per_slice.loc[row["case_id"], "dice"] == pytest.approx(reference)


def test_volume_steps_see_the_patients_slices_together(lgg_eval, tmp_path):
    """A checkpoint that z-scores per patient is evaluated on each patient's stack, as training saw it."""
    import json
    import shutil

    import tifffile
    import torch

    from raysegment.evaluate import VolumeScorer
    from raysegment.models.checkpoint import load_model

    uri = tmp_path / "model"
    shutil.copytree(lgg_eval["full"], uri)
    meta = json.loads((uri / "model.json").read_text())
    meta["preprocess"]["steps"] = [{"name": "zscore", "region": "nonzero", "scope": "volume"}]
    (uri / "model.json").write_text(json.dumps(meta))
    scorer = VolumeScorer(str(uri), {"largest_component": False})
    model, _ = load_model(str(uri))

    manifest = read_manifest(lgg_eval["manifest"])
    volume_id, part = next(iter(manifest.groupby("volume_id")))
    rows, volume = scorer.predict_volume(part.to_dict(orient="records"))
    # By hand: the patient's TIFFs, each channel z-scored over all its slices' nonzero voxels, the model, a 0.5 threshold.
    stacked = np.stack([np.moveaxis(tifffile.imread(r["image_uris"][0]), -1, 0) for r in rows], axis=-1).astype(np.float64)
    normalised = np.stack([zscore_inside(channel) for channel in stacked])
    with torch.inference_mode():
        logits = model(torch.from_numpy(np.moveaxis(normalised, -1, 0).astype(np.float32)))
    expected = np.moveaxis(torch.sigmoid(logits).numpy() > 0.5, 0, -1)
    assert volume.prediction.shape == expected.shape and volume.case_id == volume_id
    assert (volume.prediction != expected).mean() < 1e-3  # float32 rounding may flip a voxel at 0.5
