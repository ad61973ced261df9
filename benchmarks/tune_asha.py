"""ASHA against FIFO on the same search: compute spent, best validation Dice, Tune's per-trial overhead.

Both searches sample the same trials (seeded random search over lr and loss) of a small U-Net
on the LGG sample dataset; ASHA stops the weaker ones at rungs, FIFO runs every trial to the end.
Prints one JSON line::

    {"asha": {"trial_epochs": ..., "best_val_dice": ..., "wall_s": ..., "startup_overhead_s": ...,
              "epoch_s": ..., "statuses": {...}}, "fifo": {...}, "compute_saved": ..., "settings": {...}}

``startup_overhead_s`` is the median over trials of (trial start -> first reported epoch) minus
that epoch's own time: what starting the trial, its Ray Train workers and its data costs.

    python benchmarks/tune_asha.py --samples 4 --max-epochs 4 --out /tmp/tune_bench
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")


def make_manifest(out: str, patients: int, slices: int, size: int) -> str:
    from raysegment import storage
    from raysegment.ingest import ingest
    from raysegment.sample_data import make_sample_data

    manifest = storage.join(out, "manifest.parquet")
    if not storage.exists(manifest):
        make_sample_data(storage.join(out, "data"), "lgg", patients=patients, slices=slices, size=size)
        ingest("lgg", storage.join(out, "data"), manifest)
    return manifest


def search(args, manifest: str, scheduler: str) -> dict:
    from raysegment import storage
    from raysegment.tune import load_tune_config, run_tune

    config = load_tune_config(overrides={
        "out": storage.join(args.out, scheduler), "model": "unet", "manifest": manifest, "samples": args.samples,
        "max_epochs": args.max_epochs, "scheduler": scheduler, "max_concurrent": args.max_concurrent, "seed": args.seed,
        "space": {"optim.lr": {"loguniform": [1e-4, 3e-2]}, "optim.loss": {"choice": ["dice", "bce_dice", "focal"]},
                  "optim.batch_size": None, "optim.weight_decay": None, "model.config.base_channels": None},
        "train": {
            "data": {"preprocess": {"steps": [{"name": "scale"}, {"name": "resize", "size": args.size}]}, "augment": {"enabled": False}},
            "model": {"name": "unet", "config": {"base_channels": args.base_channels, "depth": 2}},
            "optim": {"batch_size": 8}, "scaling": {"cpus_per_worker": args.cpus_per_worker}, "tracking": {"tensorboard": False},
        },
    })
    started = time.perf_counter()
    result = run_tune(config)
    trials = result.trials
    return {
        "trial_epochs": int(trials["epochs_run"].sum()),
        "best_val_dice": float(trials["best_val_dice"].max()),
        "wall_s": round(time.perf_counter() - started, 1),
        "startup_overhead_s": round(float(trials["startup_overhead_s"].median()), 2),
        "first_report_s": round(float(trials["first_report_s"].median()), 2),
        "epoch_s": round(float(result.history["epoch_time_s"].median()), 3),
        "statuses": {str(k): int(v) for k, v in trials["status"].value_counts().items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/raysegment_tune_bench")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--base-channels", type=int, default=8)
    parser.add_argument("--cpus-per-worker", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--address", default=None)
    args = parser.parse_args()

    from raysegment.runtime import init_ray

    init_ray(args.address)
    manifest = make_manifest(args.out, args.patients, args.slices, args.size)
    asha, fifo = search(args, manifest, "asha"), search(args, manifest, "fifo")
    print(json.dumps({
        "asha": asha, "fifo": fifo,
        "compute_saved": round(1 - asha["trial_epochs"] / fifo["trial_epochs"], 3),
        "settings": {k: v for k, v in vars(args).items() if k != "address"},
    }))


if __name__ == "__main__":
    main()
