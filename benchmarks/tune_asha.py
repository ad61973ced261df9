"""ASHA against FIFO on the same search: compute spent, best validation Dice, Tune's per-trial overhead.

Both searches sample the same seeded trials (random search over a learning rate spanning good and
bad values, log-uniform, and the loss) of a small U-Net on the LGG sample dataset; ASHA stops the
weaker ones at its rungs (``grace_period * reduction_factor**k`` epochs), FIFO runs every trial to
``max_epochs``. The target: ASHA's best validation Dice within ``--max-dice-gap`` of FIFO's for at
most ``--max-ratio`` of FIFO's trial-epochs. Prints one JSON line::

    {"asha": {"trial_epochs": ..., "best_val_dice": ..., "wall_s": ..., "startup_overhead_s": ...,
              "epoch_s": ..., "statuses": {...}}, "fifo": {...}, "trial_epochs_ratio": ...,
     "dice_gap": ..., "same_trials": true, "target": {...}, "target_met": ..., "settings": {...}}

``startup_overhead_s`` is the median over trials of (trial start -> first reported epoch) minus
that epoch's own time: what starting the trial, its Ray Train workers and its data costs, against
``epoch_s``, the median epoch (training and validation).

Async ASHA promotes the first trials to reach each rung unconditionally (there is nothing to
compare them with yet), so its saving needs enough trials: 16 trials of up to 9 epochs with
reduction factor 3 (rungs at epochs 1, 3 and 9) by default. Validation holds 40% of the patients,
so that Dice tells good trials from bad ones.

    python benchmarks/tune_asha.py --out /tmp/tune_bench
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")


def make_manifest(out: str, patients: int, slices: int, size: int, val_fraction: float) -> str:
    from raysegment import storage
    from raysegment.ingest import ingest
    from raysegment.sample_data import make_sample_data
    from raysegment.splits import SplitConfig

    manifest = storage.join(out, f"manifest_p{patients}_s{slices}_{size}px_val{val_fraction:g}.parquet")
    if not storage.exists(manifest):
        data = storage.join(out, f"data_p{patients}_s{slices}_{size}px")
        make_sample_data(data, "lgg", patients=patients, slices=slices, size=size)
        ingest("lgg", data, manifest, split=SplitConfig(train=1 - val_fraction, val=val_fraction, test=0.0))
    return manifest


def search(args, manifest: str, scheduler: str) -> dict:
    from raysegment import storage
    from raysegment.tune import load_tune_config, run_tune

    exp_uri = storage.join(args.out, scheduler)
    if storage.is_dir(exp_uri):  # run_tune would resume the earlier search there, not measure a new one
        fs, path = storage.filesystem(exp_uri)
        fs.delete_dir(path)
    config = load_tune_config(overrides={
        "out": exp_uri, "model": "unet", "manifest": manifest, "samples": args.samples,
        "max_epochs": args.max_epochs, "scheduler": scheduler, "grace_period": args.grace_period,
        "reduction_factor": args.reduction_factor, "max_concurrent": args.max_concurrent, "seed": args.seed,
        "space": {"optim.lr": {"loguniform": [args.lr_min, args.lr_max]}, "optim.loss": {"choice": args.losses},
                  "optim.batch_size": None, "optim.weight_decay": None, "model.config.encoder": None},
        "train": {
            "data": {"preprocess": {"steps": [{"name": "scale"}, {"name": "resize", "size": args.size}]}, "augment": {"enabled": False}},
            "model": {"name": "unet", "config": {"base_channels": args.base_channels, "depth": args.depth}},
            "optim": {"batch_size": args.batch_size}, "scaling": {"cpus_per_worker": args.cpus_per_worker},
            "tracking": {"tensorboard": False},
        },
    })
    started = time.perf_counter()
    result = run_tune(config)
    trials = result.trials
    return {
        "trial_epochs": int(trials["epochs_run"].sum()),
        "best_val_dice": round(float(trials["best_val_dice"].max()), 4),
        "best_trial": result.best_trial,
        "wall_s": round(time.perf_counter() - started, 1),
        "startup_overhead_s": round(float(trials["startup_overhead_s"].median()), 2),
        "first_report_s": round(float(trials["first_report_s"].median()), 2),
        "epoch_s": round(float(result.history["epoch_time_s"].median()), 3),
        "statuses": {str(k): int(v) for k, v in trials["status"].value_counts().items()},
        "epochs_per_trial": dict(zip(trials["trial"], trials["epochs_run"].astype(int).tolist())),
        "params": dict(zip(trials["trial"], trials["params_json"])),
    }


def compare(asha: dict, fifo: dict, max_ratio: float, max_dice_gap: float) -> dict:
    """The figures the target is about; ``same_trials`` checks both searches sampled the same configs."""
    ratio = asha["trial_epochs"] / fifo["trial_epochs"]
    gap = fifo["best_val_dice"] - asha["best_val_dice"]
    return {
        "trial_epochs_ratio": round(ratio, 3),
        "compute_saved": round(1 - ratio, 3),
        "dice_gap": round(gap, 4),
        "same_trials": asha.pop("params") == fifo.pop("params"),
        "target": {"max_ratio": round(max_ratio, 3), "max_dice_gap": max_dice_gap},
        "target_met": ratio <= max_ratio and gap <= max_dice_gap,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/raysegment_tune_bench")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--max-epochs", type=int, default=9)
    parser.add_argument("--grace-period", type=int, default=1)
    parser.add_argument("--reduction-factor", type=float, default=3.0)
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--lr-min", type=float, default=1e-5)
    parser.add_argument("--lr-max", type=float, default=1e-1)
    parser.add_argument("--losses", nargs="+", default=["dice", "bce_dice", "focal"])
    parser.add_argument("--patients", type=int, default=32)
    parser.add_argument("--slices", type=int, default=24)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--val-fraction", type=float, default=0.4)
    parser.add_argument("--base-channels", type=int, default=8)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cpus-per-worker", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-ratio", type=float, default=1 / 3)
    parser.add_argument("--max-dice-gap", type=float, default=0.02)
    parser.add_argument("--schedulers", nargs="+", default=["asha", "fifo"], choices=["asha", "fifo"],
                        help="run only some (the JSON then has no comparison)")
    parser.add_argument("--address", default=None)
    args = parser.parse_args()

    from raysegment.runtime import init_ray

    init_ray(args.address)
    manifest = make_manifest(args.out, args.patients, args.slices, args.size, args.val_fraction)
    runs = {scheduler: search(args, manifest, scheduler) for scheduler in args.schedulers}
    report = dict(runs)
    if {"asha", "fifo"} <= set(runs):
        report.update(compare(runs["asha"], runs["fifo"], args.max_ratio, args.max_dice_gap))
    for run in runs.values():
        run.pop("params", None)
    report["settings"] = {k: v for k, v in vars(args).items() if k not in ("address", "schedulers")}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
