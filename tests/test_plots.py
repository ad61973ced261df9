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


def test_training_curves_png(tmp_path):
    uri = plots.training_curves(_history(), str(tmp_path / "curves.png"))
    width, height = _png_size((tmp_path / "curves.png").read_bytes())
    assert uri.endswith("curves.png") and width > 2 * height > 400  # two panels side by side


def test_training_curves_need_the_metric_columns(tmp_path):
    with pytest.raises(KeyError):
        plots.training_curves(_history().drop(columns=["val_iou"]), str(tmp_path / "curves.png"))


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
