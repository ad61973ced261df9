"""The nightly job end to end: ``raysegment nightly`` against a bare PyTorch loop over the same new scans.

Three figures, each measured here side by side:

* **End to end**: one night of ``--cases`` new LGG slices (discovery, manifest, Ray Data inference,
  ledger and report) against the bare loop of ``infer_throughput.py`` (read, preprocess, predict,
  write, one case after another in a fresh process) over the same cases, model and batch size.
  Ray is up and one small night has run first, as on a running cluster.
* **Discovery at 10x history**: the time to find a night's new cases in an archive that also holds
  10x as many processed ones (all in the ledger), as a share of the night's time.
* **Driver memory at 10x cases**: the peak RSS of the driver process of a night over the whole
  discovery archive (11x the cases: at least 10x, as the target asks) against a night of 1x, each
  in a fresh process joined to the same Ray instance.

    python benchmarks/nightly.py --cases 5000 --size 32
    python benchmarks/nightly.py --cases 1000 --size 32   # start-up weighs more: see the README

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from infer_throughput import run_bare  # noqa: E402  (the one bare loop both benchmarks compare against)

SLICES = 10  # per patient: LGG cases are slices


def make_archive(root: str, patients: int, size: int, seed: int) -> str:
    from raysegment.sample_data import make_sample_data

    make_sample_data(root, "lgg", patients=patients, slices=SLICES, size=size, seed=seed)
    return os.path.join(root, "kaggle_3m")


def make_model(uri: str, size: int, base_channels: int) -> str:
    from raysegment.models import ModelSpec, save_model
    from raysegment.preprocess import PreprocessConfig

    preprocess = PreprocessConfig(labels={"tumor": "nonzero"}, steps=[{"name": "scale"}, {"name": "resize", "size": size}])
    spec = ModelSpec("unet", 3, 1, {"base_channels": base_channels, "depth": 3})
    save_model(uri, spec.build(), spec, preprocess=preprocess.model_dump(), class_names=preprocess.class_names)
    return uri


def night_in_subprocess(config: dict, date: str, address: str) -> dict:
    """One night in a fresh driver process joined to ``address``; returns night.json plus the driver's peak RSS."""
    code = ("import json, resource, sys; from raysegment.nightly import NightlyConfig, run_night; "
            f"r = run_night(NightlyConfig(**json.loads(sys.argv[1])), {date!r}); "
            "print(json.dumps({**r.summary, 'driver_peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(config)], check=True, capture_output=True, text=True,
                          env={**os.environ, "RAY_ADDRESS": address})
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="new cases in the night (a multiple of 10)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--base-channels", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=float, default=0.75)
    parser.add_argument("--history", type=int, default=10, help="processed cases in the discovery archive, as a multiple of --cases")
    parser.add_argument("--no-memory", action="store_true", help="skip the 10x-cases memory night")
    args = parser.parse_args()

    import ray

    from raysegment.nightly import NightlyConfig, run_night
    from raysegment.nightly import ledger as ledgers
    from raysegment.nightly.discover import discover
    from raysegment.nightly.run import model_version
    from raysegment.runtime import init_ray

    patients = args.cases // SLICES
    infer = {"workers": args.workers, "cpus_per_worker": args.cpus_per_worker, "batch_size": args.batch_size}
    with tempfile.TemporaryDirectory() as root:
        model = make_model(os.path.join(root, "model"), args.size, args.base_channels)
        archive = make_archive(os.path.join(root, "night"), patients, args.size, seed=0)
        init_ray()
        warm = make_archive(os.path.join(root, "warm"), 1, args.size, seed=1)
        run_night(NightlyConfig(archive=warm, kind="lgg", model=model, out=os.path.join(root, "warm-out"), infer=infer), "2026-01-01")

        config = NightlyConfig(archive=archive, kind="lgg", model=model, out=os.path.join(root, "out"), infer=infer)
        finished = []
        start = time.perf_counter()
        night = run_night(config, "2026-01-02", on_case=lambda row, _: finished.append(time.perf_counter() - start))
        night_s = time.perf_counter() - start
        os.makedirs(os.path.join(root, "bare"))
        bare = run_bare(os.path.join(night.folder, "manifest.parquet"), model, args.batch_size, os.path.join(root, "bare"), "none")

        # Discovery among 10x processed cases: the first history x patients are in the ledger.
        big = make_archive(os.path.join(root, "history"), patients * (args.history + 1), args.size, seed=2)
        version = model_version(model).version
        found = discover(big, "lgg")
        processed = found[found["volume_id"].isin(sorted(set(found["volume_id"]))[: patients * args.history])]
        history_out = os.path.join(root, "history-out")
        ledgers.record(history_out, ledgers.read_ledger(history_out), processed[["case_id", "fingerprint"]].assign(
            model_version=version, status="done", date="2026-01-01", error=None))
        start = time.perf_counter()
        todo = ledgers.pending(discover(big, "lgg"), ledgers.read_ledger(history_out), version)
        discovery_s = time.perf_counter() - start
        assert len(todo) == args.cases, (len(todo), args.cases)

        memory = {}
        if not args.no_memory:
            address = ray.get_runtime_context().gcs_address
            one = night_in_subprocess({**config.model_dump(), "out": os.path.join(root, "mem1")}, "2026-01-03", address)
            ten = night_in_subprocess({**config.model_dump(), "archive": big, "out": os.path.join(root, "mem10")}, "2026-01-03", address)
            memory = {"driver_peak_rss_mb_1x": round(one["driver_peak_rss_mb"], 1), "driver_peak_rss_mb_10x": round(ten["driver_peak_rss_mb"], 1),
                      "cases_10x": ten["new"], "driver_memory_ratio_10x": round(ten["driver_peak_rss_mb"] / one["driver_peak_rss_mb"], 3)}

    cases_per_s = night.done / night_s
    bare_cases_per_s = args.cases / bare["seconds"]
    print(json.dumps({
        "benchmark": "nightly", "cases": args.cases, "done": night.done, "failed": night.failed, "size": args.size,
        "base_channels": args.base_channels, "batch_size": args.batch_size, "workers": args.workers, "cpus_per_worker": args.cpus_per_worker,
        "night_s": round(night_s, 2), "night_cases_per_s": round(cases_per_s, 2), "night_first_case_s": round(finished[0], 2),
        "night_steady_cases_per_s": round((len(finished) - 1) / (finished[-1] - finished[0]), 2),
        "bare_s": bare["seconds"], "bare_first_case_s": bare["first_case_s"], "bare_steady_cases_per_s": bare["steady_slices_per_s"],
        "bare_cases_per_s": round(bare_cases_per_s, 2), "end_to_end_ratio": round(cases_per_s / bare_cases_per_s, 3),
        "history_cases": len(found) - args.cases, "discovery_s": round(discovery_s, 2), "discovery_share_of_night": round(discovery_s / night_s, 3),
        **memory, "cpus": os.cpu_count(), "machine": platform.machine(), "processor": platform.processor(),
    }))


if __name__ == "__main__":
    main()
