"""Figures: training curves and overlays are real PNGs, written locally or to S3."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raysegment import plots, storage


def _history(epochs: int = 4) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    return pd.DataFrame({"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_dice": 1 - 1 / (e + 1),
                         "val_dice": 0.9 - 1 / (e + 2), "train_iou": 0.8 - 1 / (e + 2), "val_iou": 0.7 - 1 / (e + 3)})


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _lines(ax) -> dict[str, list[float]]:
    return {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}


def test_training_curves_png(tmp_path):
    uri = plots.training_curves(_history(), str(tmp_path / "curves.png"))
    width, height = _png_size((tmp_path / "curves.png").read_bytes())
    assert uri.endswith("curves.png") and width > 2 * height > 400  # loss, dice and iou side by side


def test_every_history_metric_is_a_panel_of_train_and_validation_lines():
    history = _history().assign(train_accuracy=0.9, val_accuracy=0.8, train_precision=0.7, val_precision=0.6, train_recall=0.5,
                                val_recall=0.4, train_loss_bce=0.3, val_loss_bce=0.2, val_patient_dice=0.1, lr=1e-3,
                                train_time_s=5.0, images_per_s=10.0)
    assert plots.curve_metrics(history) == ["loss", "dice", "iou", "accuracy", "precision", "recall", "loss_bce", "patient_dice"]
    fig = plots.curves_figure(history)
    try:
        axes = fig.get_axes()
        assert [ax.get_title() for ax in axes] == plots.curve_metrics(history)
        by_title = {ax.get_title(): _lines(ax) for ax in axes}
        assert by_title["loss"] == {"train": list(history["train_loss"]), "validation": list(history["val_loss"])}
        assert by_title["accuracy"] == {"train": [0.9] * 4, "validation": [0.8] * 4}
        assert by_title["patient_dice"] == {"validation": [0.1] * 4}  # a metric of one split: one line
        assert list(axes[0].get_lines()[0].get_xdata()) == [1, 2, 3, 4]
    finally:
        plots._pyplot().close(fig)


def test_training_curves_of_named_metrics_need_their_columns(tmp_path):
    with pytest.raises(KeyError, match="train_f1"):
        plots.training_curves(_history(), str(tmp_path / "curves.png"), metrics=["loss", "f1"])
    with pytest.raises(ValueError, match="nothing to plot"):
        plots.training_curves(_history()[["epoch"]], str(tmp_path / "curves.png"))


def test_runs_figure_overlays_runs_one_line_each_per_metric_and_split(tmp_path):
    unet, transunet = _history(4), _history(3).assign(train_loss_bce=0.5, val_loss_bce=0.25)
    fig = plots.runs_figure({"unet": unet, "transunet": transunet})
    try:
        titles = [ax.get_title() for ax in fig.get_axes()]
        assert titles == ["train loss", "validation loss", "train dice", "validation dice", "train iou", "validation iou",
                          "train loss_bce", "validation loss_bce"]
        panels = {ax.get_title(): _lines(ax) for ax in fig.get_axes()}
        assert panels["validation loss"] == {"unet": list(unet["val_loss"]), "transunet": list(transunet["val_loss"])}
        assert panels["train loss_bce"] == {"transunet": [0.5] * 3}  # only the run that has it
    finally:
        plots._pyplot().close(fig)
    uri = plots.runs_curves({"unet": unet, "transunet": transunet}, str(tmp_path / "runs.png"))
    assert _png_size(storage.read_bytes(uri))[0] > 0


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_overlay_png_for_any_channel_count(tmp_path, channels):
    rng = np.random.default_rng(0)
    truth = np.zeros((2, 40, 40), bool)
    truth[0, 10:20, 10:20] = truth[1, 12:16, 12:16] = True
    prediction = np.roll(truth, 2, axis=-1)
    uri = plots.overlay(rng.random((channels, 40, 40)), truth, prediction, str(tmp_path / "o.png"), title="case",
                        class_names=["WT", "ET"])
    width, height = _png_size(storage.read_bytes(uri))
    assert width > 2 * height


@pytest.mark.s3
def test_figures_go_to_s3(s3_bucket):
    uri = plots.training_curves(_history(2), f"{s3_bucket}/run/train_curves.png")
    assert _png_size(storage.read_bytes(uri))[0] > 0


def test_overlay_without_truth_shows_image_and_prediction_and_picks_a_volume_slice():
    prediction = np.zeros((1, 32, 32, 5), bool)
    prediction[0, 8:20, 8:20, 3] = True
    prediction[0, 10:12, 10:12, 1] = True
    fig = plots.overlay_figure(np.random.default_rng(0).random((1, 32, 32, 5)), None, prediction, title="new scan")
    try:
        axes = fig.get_axes()
        assert [ax.get_title() for ax in axes] == ["image", "prediction"]
        assert fig._suptitle.get_text() == "new scan, slice 3"  # the slice with most predicted foreground
        assert len(axes[1].collections) == 1 and not axes[0].collections  # one contour, on the prediction
    finally:
        plots._pyplot().close(fig)
    truth = np.zeros_like(prediction)
    truth[0, 4:8, 4:8, 2] = True
    fig = plots.overlay_figure(np.zeros((3, 32, 32, 5)), truth, prediction)
    try:
        assert [ax.get_title() for ax in fig.get_axes()] == ["image", "ground truth", "prediction"]
        assert fig._suptitle.get_text() == "slice 2"  # the reference's slice, where there is one
    finally:
        plots._pyplot().close(fig)
