"""Accuracy of the 3D recipe on real hippocampus MRI: K-fold cross-validation, beside nnU-Net's figures.

Ingests an MSD Task04 folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``), pools every labeled
case, and runs ``jobs/hippocampus_3d.yaml`` as ``raysegment train --folds K`` does
(:func:`raysegment.train.folds.train_folds`: patient-grouped folds, each its own Ray Train run,
all scheduled at once); then scores each fold's model on the cases it never saw
(:func:`raysegment.crossval.evaluate_folds`, which runs ``raysegment.evaluate``: sliding windows,
back on each scan's grid), without and with test-time mirroring. Reported, per class (anterior,
posterior) over all cases: mean Dice and HD95 (mm), per fold the mean Dice, beside nnU-Net's
published 5-fold figures; training patches/s,
the share of training time the loop waited for data, wall time and hardware.

    python benchmarks/hippocampus.py --data ../shared/data/hippocampus                 # CPU development setting
    python benchmarks/hippocampus.py --data DIR --full --gpus-per-worker 1             # the recipe as written

Prints one JSON line (and writes it to OUT/result.json). Re-running with the same ``--out``
resumes: finished folds are not trained again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

#: nnU-Net (Isensee et al. 2021), MSD Task04 5-fold cross-validation, 3D full resolution: mean Dice.
PUBLISHED = {"nnunet_3d_fullres": {"Anterior": 0.90, "Posterior": 0.89}}
RECIPE = os.path.join(os.path.dirname(__file__), "..", "jobs", "hippocampus_3d.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="MSD Task04 folder (dataset.json, imagesTr/, labelsTr/)")
    parser.add_argument("--out", default="runs/bench_hippocampus")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--full", action="store_true", help="the recipe's own epochs and widths (a GPU setting)")
    parser.add_argument("--epochs", type=int, default=15, help="development setting: epochs per fold")
    parser.add_argument("--base-channels", type=int, default=8, help="development setting: width of the first level")
    parser.add_argument("--patches-per-volume", type=int, default=6, help="development setting: patches per volume and epoch")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cpus-per-worker", type=float, default=None)
    parser.add_argument("--gpus-per-worker", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import pandas as pd

    from raysegment.crossval import evaluate_folds
    from raysegment.ingest import ingest
    from raysegment.manifest import write_manifest
    from raysegment.train import load_config
    from raysegment.train.folds import train_folds

    started = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    ingested = ingest("msd", args.data, os.path.join(args.out, "ingested.parquet"))
    df = ingested.manifest
    labeled = df[df["mask_uri"].notna()]
    manifest = os.path.join(args.out, "manifest.parquet")
    # Cross-validation over every labeled case, as nnU-Net's figures are: no case is held back from the folds.
    write_manifest(labeled.assign(split="train"), manifest)
    overrides = {"out": os.path.join(args.out, "folds"), "data.manifest": manifest, "data.preprocess.labels": ingested.labels,
                 "optim.seed": args.seed, "scaling.workers": args.workers, "scaling.gpus_per_worker": args.gpus_per_worker,
                 "tracking.progress": False}
    if args.cpus_per_worker:
        overrides["scaling.cpus_per_worker"] = args.cpus_per_worker
    if not args.full:
        overrides.update({"optim.epochs": args.epochs, "model.config.base_channels": args.base_channels,
                          "model.config.max_channels": 8 * args.base_channels, "data.patches_per_volume": args.patches_per_volume})
    config = load_config(RECIPE, overrides)
    folds = train_folds(config, args.folds, seed=args.seed)
    trained_s = time.perf_counter() - started
    cv = evaluate_folds(folds.out, manifest, os.path.join(args.out, "cv"))
    # The same models with nnU-Net's test-time mirroring (all eight flips of each window).
    mirrored = evaluate_folds(folds.out, manifest, os.path.join(args.out, "cv_mirror"), postprocess={"mirror": True})

    def per_class(cases):
        return {name: {"dice": float(part["dice"].mean()), "dice_median": float(part["dice"].median()),
                       "hd95_mm": float(part["hd95"].mean(skipna=True))} for name, part in cases.groupby("class")}

    cases = cv.cases
    per_fold = {int(k): float(part["dice"].mean()) for k, part in cases.groupby("fold")}
    summaries = [json.load(open(os.path.join(folds.out, f"fold_{k}", "summary.json"))) for k in range(args.folds)]
    result = {
        "benchmark": "hippocampus_3d_cv",
        "date": time.strftime("%Y-%m-%d"),
        "data": os.path.abspath(args.data),
        "cases": int(cases["case_id"].nunique()),
        "folds": args.folds,
        "setting": "full" if args.full else {"epochs": args.epochs, "base_channels": args.base_channels,
                                              "patches_per_volume": args.patches_per_volume},
        "recipe": {"model": config.model.model_dump(), "optim": config.optim.model_dump(), "preprocess": summaries[0]["model"]},
        "dice": per_class(cases),
        "dice_mean": float(cases["dice"].mean()),
        "mirror": {"dice": per_class(mirrored.cases), "dice_mean": float(mirrored.cases["dice"].mean())},
        "dice_per_fold": per_fold,
        "published": PUBLISHED,
        "patches_per_s": float(pd.Series([s["images_per_s"] for s in summaries]).mean()),
        "data_wait_share": float(pd.Series([s.get("data_wait_share") or 0.0 for s in summaries]).mean()),
        "train_wall_s": trained_s,
        "wall_s": time.perf_counter() - started,
        "hardware": {**summaries[0]["hardware"], "machine": platform.machine(), "cpus": os.cpu_count()},
    }
    with open(os.path.join(args.out, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
