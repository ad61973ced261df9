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


#: The splits a training history reports each metric for, and their names in legends and titles.
SPLITS = {"train": "train", "val": "validation"}
#: ``train_*``/``val_*`` history columns that are no per-epoch score or loss.
_NOT_CURVES = ("train_time_s",)


def curve_metrics(history: pd.DataFrame) -> list[str]:
    """The metrics a training history holds per split, in column order: ``loss``, ``loss_bce``, ``dice``, ...

    A metric is the name after ``train_`` or ``val_`` (``val_patient_dice`` -> ``patient_dice``).
    """
    metrics: list[str] = []
    for column in history.columns:
        split, _, metric = str(column).partition("_")
        if split in SPLITS and metric and column not in _NOT_CURVES and metric not in metrics:
            metrics.append(metric)
    return metrics


def _grid(panels: list[tuple[str, list[tuple[str, pd.Series, pd.Series]]]], columns: int = 4):
    """A figure of one panel per ``(title, [(label, epochs, values), ...])``, ``columns`` panels a row."""
    if not panels:
        raise ValueError("nothing to plot: no train_* or val_* metric column")
    plt = _pyplot()
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, (title, lines) in zip(axes.flat, panels):
        for label, epochs, values in lines:
            ax.plot(epochs, values, "o-", markersize=3, label=label)
        ax.set(title=title, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.flat[len(panels):]:
        fig.delaxes(ax)
    fig.tight_layout()
    return fig


def curves_figure(history: pd.DataFrame, metrics: list[str] | None = None):
    """One panel per metric of one run, its train and validation values per epoch.

    Args:
        history: one row per epoch with ``epoch`` and ``train_<metric>``/``val_<metric>`` columns;
            a metric may have one split only (``val_patient_dice``).
        metrics: the panels, in order; default every metric of the history (:func:`curve_metrics`).
    """
    metrics = curve_metrics(history) if metrics is None else list(metrics)
    panels = []
    for metric in metrics:
        lines = [(label, history["epoch"], history[f"{split}_{metric}"]) for split, label in SPLITS.items() if f"{split}_{metric}" in history]
        if not lines:
            raise KeyError(f"no train_{metric} or val_{metric} column in the history (has {list(history.columns)})")
        panels.append((metric, lines))
    return _grid(panels)


def training_curves(history: pd.DataFrame, uri: str, metrics: list[str] | None = None) -> str:
    """Write :func:`curves_figure` of ``history`` to ``uri``; returns ``uri``."""
    return _save(curves_figure(history, metrics), uri)


def runs_figure(histories: dict[str, pd.DataFrame]):
    """The training curves of several runs overlaid: one panel per metric and split (``val loss``), one line per run.

    Args:
        histories: run name -> its history (as :func:`curves_figure` takes); a panel shows the runs that have its column.
    """
    metrics: list[str] = []
    for history in histories.values():
        metrics += [m for m in curve_metrics(history) if m not in metrics]
    panels = []
    for metric in metrics:
        for split, label in SPLITS.items():
            column = f"{split}_{metric}"
            lines = [(name, history["epoch"], history[column]) for name, history in histories.items() if column in history]
            if lines:
                panels.append((f"{label} {metric}", lines))
    return _grid(panels)


def runs_curves(histories: dict[str, pd.DataFrame], uri: str) -> str:
    """Write :func:`runs_figure` of ``histories`` to ``uri``; returns ``uri``."""
    return _save(runs_figure(histories), uri)


def _display(image: np.ndarray) -> np.ndarray:
    """A ``(C, H, W)`` image as something imshow shows: grey for 1 channel, RGB for 3, first channel otherwise."""
    image = np.asarray(image, dtype=np.float32)
    shown = image[:3].transpose(1, 2, 0) if image.shape[0] == 3 else image[0]
    low, high = np.percentile(shown, [1, 99])
    return np.clip((shown - low) / max(high - low, 1e-8), 0, 1)


def overlay_figure(image: np.ndarray, truth: np.ndarray | None, prediction: np.ndarray, title: str = "",
                   class_names: list[str] | None = None, slice_index: int | None = None):
    """Image, ground truth (when there is one) and prediction side by side, masks as coloured contours.

    A volume shows one slice: ``slice_index``, else the one with the most reference foreground (the
    most predicted foreground without any); the title names it.

    Shape:
        image ``(C, H, W)`` or ``(C, H, W, S)``; truth (or None, an unlabeled case) and prediction
        ``(K, H, W)`` or ``(K, H, W, S)`` boolean.
    """
    if prediction.ndim == 4:
        if slice_index is None:
            shown = truth if truth is not None and truth.any() else prediction
            slice_index = int(np.argmax(shown.sum(axis=(0, 1, 2))))
        image, prediction = image[..., slice_index], prediction[..., slice_index]
        truth = None if truth is None else truth[..., slice_index]
        title = f"{title}, slice {slice_index}" if title else f"slice {slice_index}"
    plt = _pyplot()
    shown = _display(image)
    cmap = None if shown.ndim == 3 else "gray"
    names = class_names or [f"class {k}" for k in range(prediction.shape[0])]
    panels = [("image", None), *([("ground truth", truth)] if truth is not None else []), ("prediction", prediction)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.3))
    for ax, (label, masks) in zip(axes, panels):
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
    return fig


def overlay(image: np.ndarray, truth: np.ndarray | None, prediction: np.ndarray, uri: str, title: str = "",
            class_names: list[str] | None = None, slice_index: int | None = None) -> str:
    """Write :func:`overlay_figure` to ``uri``; returns ``uri``."""
    return _save(overlay_figure(image, truth, prediction, title, class_names, slice_index), uri)


def night_distributions(metrics: pd.DataFrame, uri: str) -> str:
    """Histograms of a night's segmented volumes per class and, for cases with ground truth, of their Dice; returns ``uri``."""
    plt = _pyplot()
    with_dice = "dice" in metrics and metrics["dice"].notna().any()
    fig, axes = plt.subplots(1, 2 if with_dice else 1, figsize=(11 if with_dice else 5.5, 4), squeeze=False)
    for name, part in metrics.groupby("class"):
        axes[0][0].hist(part["foreground_ml"].dropna(), bins=30, alpha=0.6, label=str(name))
        if with_dice:
            axes[0][1].hist(part["dice"].dropna(), bins=20, range=(0, 1), alpha=0.6, label=str(name))
    axes[0][0].set(xlabel="segmented volume (mL)", ylabel="cases", title="Segmented volume")
    if with_dice:
        axes[0][1].set(xlabel="Dice", ylabel="cases", title="Dice (cases with ground truth)")
    for ax in axes[0]:
        ax.legend()
    return _save(fig, uri)
