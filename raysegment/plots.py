"""Figures of training and evaluation: loss/score curves and image/truth/prediction overlays.

matplotlib runs with the Agg backend (no display needed, safe in Ray workers); every figure is
written through :func:`raysegment.storage.atomic_write`, so the target may be local or ``s3://``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from raysegment import storage


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, uri: str) -> str:
    plt = _pyplot()
    with storage.atomic_write(uri) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return uri


def training_curves(history: pd.DataFrame, uri: str) -> str:
    """Loss (left) and Dice/IoU (right) per epoch, train vs validation; returns ``uri``.

    Args:
        history: one row per epoch with ``epoch``, ``train_loss``, ``val_loss``, ``train_dice``,
            ``val_dice``, ``train_iou``, ``val_iou``.
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = history["epoch"]
    left.plot(epochs, history["train_loss"], "o-", label="train")
    left.plot(epochs, history["val_loss"], "o-", label="validation")
    left.set(title="loss", xlabel="epoch")
    for metric, style in (("dice", "-"), ("iou", "--")):
        right.plot(epochs, history[f"train_{metric}"], f"o{style}", color="C0", label=f"train {metric}")
        right.plot(epochs, history[f"val_{metric}"], f"o{style}", color="C1", label=f"validation {metric}")
    right.set(title="Dice and IoU", xlabel="epoch", ylim=(0, 1))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, uri)


def _display(image: np.ndarray) -> np.ndarray:
    """A ``(C, H, W)`` image as something imshow shows: grey for 1 channel, RGB for 3, first channel otherwise."""
    image = np.asarray(image, dtype=np.float32)
    shown = image[:3].transpose(1, 2, 0) if image.shape[0] == 3 else image[0]
    low, high = np.percentile(shown, [1, 99])
    return np.clip((shown - low) / max(high - low, 1e-8), 0, 1)


def overlay(image: np.ndarray, truth: np.ndarray, prediction: np.ndarray, uri: str, title: str = "",
            class_names: list[str] | None = None) -> str:
    """Image, ground truth and prediction side by side (masks as coloured contours on the image).

    Shape:
        image ``(C, H, W)``; truth and prediction ``(K, H, W)`` boolean.
    """
    plt = _pyplot()
    shown = _display(image)
    cmap = None if shown.ndim == 3 else "gray"
    names = class_names or [f"class {k}" for k in range(truth.shape[0])]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
    for ax, (label, masks) in zip(axes, (("image", None), ("ground truth", truth), ("prediction", prediction))):
        ax.imshow(shown, cmap=cmap)
        ax.set_title(label)
        ax.axis("off")
        if masks is None:
            continue
        for k in range(masks.shape[0]):
            if masks[k].any():
                ax.contour(masks[k].astype(float), levels=[0.5], colors=[f"C{k + 1}"], linewidths=1.2)
        handles = [plt.Line2D([], [], color=f"C{k + 1}", label=n) for k, n in enumerate(names)]
        ax.legend(handles=handles, loc="lower right", fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, uri)
