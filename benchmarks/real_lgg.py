"""Accuracy on real LGG scans: patient-level k-fold cross-validation of the recommended recipe.

Ingests any ``kaggle_3m`` folder, deals its patients into ``--folds`` folds (raysegment.splits),
and for each fold trains ``jobs/lgg_recipe.yaml`` with raysegment's own pipeline (Ray Train), the
model chosen on validation patients drawn from the training folds, then evaluates the fold's test
patients with ``raysegment.evaluate``. Every patient is a test patient exactly once. Reported, over
all test patients, beside the published figures:

* per-patient Dice (slices stacked, largest 3D component kept): mean, median, 95% bootstrap interval;
* the same without post-processing, and for the final weights (``last/``) beside the selected ones (``best/``);
* the final weights with test-time mirroring (``--mirror``);
* per-slice mean Dice and the share of empty slices (what a per-slice figure hides);
* wall time, training images/s and hardware.

    python benchmarks/real_lgg.py --data ../shared/data/lgg/kaggle_3m                      # CPU development setting
    python benchmarks/real_lgg.py --data DIR --full --gpus-per-worker 1                    # the recipe as written
    python benchmarks/real_lgg.py --data DIR --only-folds 0 --set optim.ema=0.98 --out X   # a method change, same folds and seeds

Prints one JSON line (and writes it to OUT/result.json). Re-running with the same ``--out`` resumes:
finished folds are neither trained nor evaluated again.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from types import SimpleNamespace

import pandas as pd

PUBLISHED = {"buda2019_unet": 0.82, "buda_pytorch_unet": 0.836, "best_public_selected_on_test": 0.91}
RECIPE = os.path.join(os.path.dirname(__file__), "..", "jobs", "lgg_recipe.yaml")


def bootstrap_ci(values, rounds: int = 2000, seed: int = 0) -> list[float]:
    """95% percentile interval of the mean over patients."""
    import numpy as np

    values = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(rounds, len(values)), replace=True).mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def run_fold(args, manifest, fold: int, out: str) -> dict:
    """Train the recipe on one fold and score its test patients with and without post-processing."""
    from raysegment.evaluate import evaluate
    from raysegment.train import load_config, train
    from raysegment.train.config import apply_overrides, parse_set

    overrides = {"out": os.path.join(out, f"fold{fold}"), "data.manifest": manifest, "optim.seed": args.seed,
                 "scaling.workers": args.workers, "scaling.cpus_per_worker": args.cpus_per_worker,
                 "scaling.gpus_per_worker": args.gpus_per_worker}
    if not args.full:
        overrides.update({"optim.epochs": args.epochs, "model.config.base_channels": args.base_channels})
    overrides.update(parse_set(args.set))  # a method change measured against the recipe, same folds and seeds
    job = load_config(RECIPE, overrides, image_size=None if args.full else args.image_size)
    # The recipe's batch is the global one: data-parallel workers split it.
    job = apply_overrides(job, {"optim.batch_size": max(1, job.optim.batch_size // args.workers)})
    if args.report_only:  # the folds an earlier run finished, read back without Ray
        folder = overrides["out"]
        with open(os.path.join(folder, "summary.json")) as f:
            run = SimpleNamespace(run_uri=folder, summary=json.load(f))
        job = load_config(os.path.join(folder, "config.yaml"))
    else:
        run = train(job)  # a finished fold of an earlier, interrupted benchmark resumes at once
    scores = {}
    # (model, largest component, test-time mirroring): mirroring costs four passes, so it is
    # measured on the final weights with post-processing only, the run's own model.
    for model, post, mirror in (("best", True, False), ("best", False, False), ("last", True, False),
                                ("last", False, False), ("last", True, True)):
        folder = os.path.join(run.run_uri, f"eval_{model}_{post}" + ("_mirror" if mirror else ""))
        if os.path.exists(os.path.join(folder, "volume_metrics.parquet")):
            scores[(model, post, mirror)] = SimpleNamespace(volumes=pd.read_parquet(os.path.join(folder, "volume_metrics.parquet")),
                                                            cases=pd.read_parquet(os.path.join(folder, "case_metrics.parquet")))
        else:
            scores[(model, post, mirror)] = evaluate(os.path.join(run.run_uri, model), manifest, "test", folder,
                                                     postprocess={"largest_component": post, "mirror": mirror})
    return {"run": run, "scores": scores, "config": job}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a kaggle_3m folder (local or s3://)")
    parser.add_argument("--out", default="/tmp/raysegment-real-lgg")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only-folds", type=int, nargs="*", help="run only these folds (quick checks)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full", action="store_true", help="the recipe as written (256 px, width 32, its epochs): GPUs advised")
    parser.add_argument("--epochs", type=int, default=25, help="CPU development setting")
    parser.add_argument("--image-size", type=int, default=128, help="CPU development setting")
    parser.add_argument("--base-channels", type=int, default=16, help="CPU development setting")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=float, default=0.5)
    parser.add_argument("--gpus-per-worker", type=float, default=0.0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the recipe, as `raysegment train --set` does (e.g. optim.ema=0.98)")
    parser.add_argument("--report-only", action="store_true", help="report the finished folds of --only-folds from OUT, training nothing")
    args = parser.parse_args()

    import numpy as np

    from raysegment.ingest import ingest
    from raysegment.manifest import write_manifest
    from raysegment.splits import assign_folds, fold_splits

    started = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    df = ingest("lgg", args.data, os.path.join(args.out, "all.parquet")).manifest
    fold_of = assign_folds(df, args.folds, args.seed)
    per_patient, per_slice, runs = [], [], []
    for fold in args.only_folds if args.only_folds is not None else range(args.folds):
        manifest = os.path.join(args.out, f"fold{fold}.parquet")
        write_manifest(df.assign(split=fold_splits(df, fold_of, fold, seed=args.seed)), manifest)
        result = run_fold(args, manifest, fold, args.out)
        for (model, post, mirror), evaluation in result["scores"].items():
            per_patient.append(evaluation.volumes.assign(fold=fold, model=model, postprocess=post, mirror=mirror))
            per_slice.append(evaluation.cases.assign(fold=fold, model=model, postprocess=post, mirror=mirror))
        runs.append(result["run"].summary)
    patients, slices = pd.concat(per_patient, ignore_index=True), pd.concat(per_slice, ignore_index=True)
    patients.to_parquet(os.path.join(args.out, "patients.parquet"), index=False)

    def figures(model: str, post: bool, mirror: bool = False) -> dict:
        def pick(df):
            return df[(df["model"] == model) & (df["postprocess"] == post) & (df["mirror"] == mirror)]

        dice, cases = pick(patients)["dice"].to_numpy(), pick(slices)
        return {"patient_dice_mean": round(float(dice.mean()), 4), "patient_dice_median": round(float(np.median(dice)), 4),
                "patient_dice_ci95": [round(v, 4) for v in bootstrap_ci(dice)], "slice_dice_mean": round(float(cases["dice"].mean()), 4),
                "slice_dice_mean_with_lesion": round(float(cases[cases["volume_true"] > 0]["dice"].mean()), 4)}

    config = result["config"]
    line = {
        "benchmark": "real_lgg",
        "setting": "full" if args.full else "cpu-development",
        "overrides": args.set,
        "recipe": {"image_size": config.data.preprocess.steps[-1]["size"], "model": config.model.name, **config.model.config,
                   "epochs": config.optim.epochs, "loss": config.optim.loss, "optimizer": config.optim.optimizer, "lr": config.optim.lr,
                   "scheduler": config.optim.scheduler},
        "folds": args.folds,
        "patients": int(patients["case_id"].nunique()),
        "slices": int(slices["case_id"].nunique()),
        "empty_slice_share": round(float((slices.drop_duplicates("case_id")["volume_true"] == 0).mean()), 4),
        "selected": figures("best", True),
        "selected_no_postprocess": figures("best", False),
        "final_weights": figures("last", True),
        "final_weights_no_postprocess": figures("last", False),
        "final_weights_mirror": figures("last", True, mirror=True),
        "published": PUBLISHED,
        "train_images_per_s": round(float(np.mean([r["images_per_s"] for r in runs])), 1),
        "train_time_s": round(float(sum(r["train_time_s"] for r in runs)), 1),
        "train_wall_s": round(float(sum(r["wall_time_s"] for r in runs)), 1),  # Ray Train runs, start-up and validation included
        "wall_s": round(time.perf_counter() - started, 1),
        "hardware": runs[0]["hardware"],  # as the training runs recorded it
    }
    text = json.dumps(line)
    with open(os.path.join(args.out, "result.json"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
