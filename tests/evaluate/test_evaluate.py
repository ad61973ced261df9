"""Evaluation: scores at the original resolution against an independent reference, tables and figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from raysegment.errors import ConfigError
from raysegment.evaluate import CaseScorer, evaluate, resolve_model
from raysegment.evaluate.run import empty_case, ranked_cases
from raysegment.manifest import read_manifest
from raysegment.models import load_model


def _reference_dice(model, image_uri: str, mask_uri: str) -> float:
    """By hand: read the TIFF, min-max scale per channel, predict, threshold, Dice with numpy."""
    image = tifffile.imread(image_uri).astype(np.float32).transpose(2, 0, 1)  # (H, W, RGB) -> (C, H, W)
    low, high = image.min(axis=(1, 2), keepdims=True), image.max(axis=(1, 2), keepdims=True)
    image = (image - low) / np.maximum(high - low, 1e-8)
    with torch.no_grad():
        pred = model(torch.from_numpy(image)[None])[0, 0].numpy() > 0
    truth = tifffile.imread(mask_uri) > 0
    denominator = pred.sum() + truth.sum()
    return 1.0 if denominator == 0 else 2.0 * (pred & truth).sum() / denominator


def test_case_dice_matches_an_independent_computation(lgg_scores, lgg_eval):
    _, result = lgg_scores
    df = read_manifest(lgg_eval["manifest"]).set_index("case_id")
    model, _ = load_model(lgg_eval["full"])
    assert set(result.cases["split"]) == {"train", "val", "test"}
    assert len(result.cases) == df["mask_uri"].notna().sum()  # one row per labeled case (one class)
    for _, row in result.cases.iterrows():
        case = df.loc[row["case_id"]]
        assert row["split"] == case["split"]
        assert row["dice"] == pytest.approx(_reference_dice(model, case["image_uris"][0], case["mask_uri"]), abs=1e-9)
    assert 0 < result.cases["dice"].mean() < 1  # the model is neither trivial nor perfect: a real check


def test_prediction_is_scored_at_the_original_resolution(lgg_eval):
    scorer = CaseScorer(lgg_eval["small"])
    df = read_manifest(lgg_eval["manifest"])
    row = df[(df["split"] == "test") & df["has_foreground"]].iloc[0].to_dict()
    case = scorer.predict(row)
    assert case.prediction.shape == case.truth.shape == (1, 64, 64) and case.spacing == (1.0, 1.0)
    # Reference: model on the 32 px input, probabilities resized back to 64 px, thresholded.
    image = tifffile.imread(row["image_uris"][0]).astype(np.float32).transpose(2, 0, 1)
    low, high = image.min(axis=(1, 2), keepdims=True), image.max(axis=(1, 2), keepdims=True)
    small = torch.nn.functional.interpolate(torch.from_numpy((image - low) / (high - low))[None], size=(32, 32),
                                            mode="bilinear", antialias=True)
    with torch.no_grad():
        probability = torch.sigmoid(scorer.model(small))
    reference = torch.nn.functional.interpolate(probability, size=(64, 64), mode="bilinear")[0].numpy() > 0.5
    assert (reference == case.prediction).mean() > 0.995


def test_volumes_are_scored_in_3d_with_their_spacing(ray_session, brats_eval, tmp_path):
    result = evaluate(brats_eval["model"], brats_eval["manifest"], "test", str(tmp_path / "eval"))
    assert list(result.cases["class"]) == ["WT", "TC", "ET"]  # one case, three overlapping regions
    assert (result.cases["dimensions"] == 3).all()
    df = read_manifest(brats_eval["manifest"])
    case = CaseScorer(brats_eval["model"]).predict(df[df["split"] == "test"].iloc[0].to_dict())
    assert case.prediction.shape == case.truth.shape == (3, 32, 32, 8) and len(case.spacing) == 3
    voxel_ml = float(np.prod(case.spacing)) / 1000.0
    assert result.cases["volume_true"].tolist() == pytest.approx((case.truth.sum(axis=(1, 2, 3)) * voxel_ml).tolist())
    # WT contains TC contains ET in the reference, so their volumes are ordered.
    wt, tc, et = result.cases["volume_true"]
    assert wt >= tc >= et
    assert (tmp_path / "eval" / "overlays" / "test_best.png").exists()


def test_run_folder_summary_and_figures(lgg_scores):
    out, result = lgg_scores
    summary = pd.read_parquet(out / "summary.parquet")
    assert set(summary["split"]) == {"train", "val", "test"}
    dice = summary[(summary["split"] == "train") & (summary["metric"] == "dice")].iloc[0]
    train_dice = result.cases[result.cases["split"] == "train"]["dice"]
    assert dice["mean"] == pytest.approx(train_dice.mean()) and dice["median"] == pytest.approx(train_dice.median())
    ranked = {f"{s}_{r}" for s in ("train", "val", "test") for r in ("best", "median", "worst")}
    with_empty_slices = set(result.cases.loc[result.cases["volume_true"] == 0, "split"])
    assert with_empty_slices and set(result.figures) == ranked | {f"{s}_empty" for s in with_empty_slices}
    assert all((out / "overlays" / f"{name}.png").stat().st_size > 5_000 for name in result.figures)
    assert pd.read_parquet(out / "case_metrics.parquet").equals(result.cases)


def test_ranked_cases_prefer_cases_with_foreground():
    cases = pd.DataFrame({"case_id": ["empty", "a", "b", "c"], "dice": [1.0, 0.9, 0.5, 0.1],
                          "volume_true": [0.0, 10.0, 12.0, 8.0]})
    assert ranked_cases(cases) == {"best": "a", "median": "b", "worst": "c"}


def test_empty_case_is_the_lesion_free_case_with_most_predicted_foreground():
    cases = pd.DataFrame({"case_id": ["a", "b", "b", "c", "d"], "dice": [0.9, 1.0, 0.0, 0.0, 1.0],
                          "volume_true": [10.0, 0.0, 0.0, 0.0, 0.0], "volume_pred": [9.0, 0.0, 3.0, 2.0, 0.0]})
    assert empty_case(cases) == "b"  # 3 predicted over its two classes
    assert empty_case(cases[cases["case_id"].isin(["a", "d"])]) == "d"
    assert empty_case(cases[cases["case_id"] == "a"]) is None


def test_empty_overlay_shows_a_lesion_free_slice_as_predicted(lgg_scores):
    out, result = lgg_scores
    for name, uri in result.figures.items():
        split, rank = name.rsplit("_", 1)
        if rank != "empty":
            continue
        case_id = empty_case(result.cases[result.cases["split"] == split])
        assert (result.cases.loc[result.cases["case_id"] == case_id, "volume_true"] == 0).all()
        assert uri == str(out / "overlays" / f"{split}_empty.png") and (out / "overlays" / f"{split}_empty.png").stat().st_size > 5_000


def _reference_bce(model, image_uri: str, mask_uri: str) -> float:
    """By hand, as the model was fitted: min-max scaled TIFF, logits, BCE against the mask."""
    image = tifffile.imread(image_uri).astype(np.float32).transpose(2, 0, 1)
    low, high = image.min(axis=(1, 2), keepdims=True), image.max(axis=(1, 2), keepdims=True)
    truth = torch.from_numpy((tifffile.imread(mask_uri) > 0).astype(np.float32))[None, None]
    with torch.no_grad():
        logits = model(torch.from_numpy((image - low) / np.maximum(high - low, 1e-8))[None])
    return float(torch.nn.functional.binary_cross_entropy_with_logits(logits, truth))


def test_loss_per_case_and_split_beside_the_metrics(lgg_scores, lgg_eval):
    out, result = lgg_scores
    df = read_manifest(lgg_eval["manifest"]).set_index("case_id")
    model, _ = load_model(lgg_eval["full"])
    for _, row in result.cases.iterrows():
        case = df.loc[row["case_id"]]
        assert row["loss"] == pytest.approx(_reference_bce(model, case["image_uris"][0], case["mask_uri"]), rel=1e-5)
    summary = pd.read_parquet(out / "summary.parquet")
    for split, part in result.cases.groupby("split"):
        rows = summary[summary["split"] == split]
        assert rows["metric"].iloc[0] == "loss" and rows["mean"].iloc[0] == pytest.approx(part["loss"].mean())
    overview = pd.read_json(out / "overview.json").set_index("split")
    assert overview["loss"].to_dict() == pytest.approx(result.cases.groupby("split")["loss"].mean().to_dict())
    # a patient's loss is the mean of its slices'
    slices = result.cases.assign(volume_id=df.loc[result.cases["case_id"], "volume_id"].to_numpy())
    assert result.volumes.set_index("case_id")["loss"].to_dict() == pytest.approx(slices.groupby("volume_id")["loss"].mean().to_dict())


def test_a_folder_without_a_model_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="not a model checkpoint"):
        resolve_model(str(tmp_path))
