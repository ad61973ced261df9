"""Milliseconds per 240x240x155 volume for HD95 + ASSD: raysegment vs MONAI, on the same masks.

The masks are tumour-like: an irregular smooth blob (about 1-2% of the volume, like a glioma in a
BraTS volume) as the reference, and as the prediction the reference grown by 2 voxels with a
noisy boundary plus a small false-positive box nearby. Prints one JSON line; no assertions.

    python benchmarks/metrics_distance.py [--cases 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch
from scipy import ndimage

from raysegment.metrics import distance_metrics

SHAPE = (240, 240, 155)
SPACING = (1.0, 1.0, 1.0)


def tumour_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Reference and prediction masks for one synthetic case."""
    target = np.zeros(SHAPE, bool)
    centre = rng.integers(70, 170, size=3) * np.array([1, 1, 155 / 240])
    box = tuple(slice(int(c) - 40, int(c) + 40) for c in centre)
    field = ndimage.gaussian_filter(rng.standard_normal((80, 80, 80)), sigma=8)
    distance = np.linalg.norm(np.indices((80, 80, 80)) - 40, axis=0)
    target[box] = (field * 40 - distance + rng.uniform(24, 34)) > 0
    noise = ndimage.gaussian_filter(rng.standard_normal(SHAPE).astype(np.float32), sigma=3)
    pred = ndimage.binary_dilation(target, iterations=2) & (noise > -0.02)
    spot = tuple(int(c) + 45 for c in centre)
    pred[spot[0] - 4 : spot[0] + 4, spot[1] - 4 : spot[1] + 4, spot[2] - 3 : spot[2] + 3] = True
    return pred, target


def monai_distances(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    from monai.metrics import HausdorffDistanceMetric, SurfaceDistanceMetric

    p = torch.from_numpy(pred[None, None].astype(np.float32))
    t = torch.from_numpy(target[None, None].astype(np.float32))
    hd95 = HausdorffDistanceMetric(include_background=True, percentile=95)(p, t, spacing=list(SPACING))
    assd = SurfaceDistanceMetric(include_background=True, symmetric=True)(p, t, spacing=list(SPACING))
    return float(hd95), float(assd)


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)
    return (time.perf_counter() - start) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    rng = np.random.default_rng(args.seed)
    ours_ms, monai_ms, max_diff, fractions = [], [], 0.0, []
    for _ in range(args.cases):
        pred, target = tumour_pair(rng)
        fractions.append(float(target.mean()))
        t_ours, ours = timed(distance_metrics, pred, target, SPACING)
        t_monai, (hd95, assd) = timed(monai_distances, pred, target)
        ours_ms.append(t_ours)
        monai_ms.append(t_monai)
        max_diff = max(max_diff, abs(ours["hd95"] - hd95), abs(ours["assd"] - assd))
    print(
        json.dumps(
            {
                "benchmark": "hd95+assd per volume",
                "shape": list(SHAPE),
                "cases": args.cases,
                "tumour_fraction_mean": round(float(np.mean(fractions)), 4),
                "raysegment_ms_median": round(float(np.median(ours_ms)), 1),
                "monai_ms_median": round(float(np.median(monai_ms)), 1),
                "speedup": round(float(np.median(monai_ms) / np.median(ours_ms)), 2),
                "max_abs_difference_mm": max_diff,
            }
        )
    )


if __name__ == "__main__":
    main()
