"""Peak memory of ``raysegment infer`` for N and 10N cases: streaming should keep it flat.

Samples, every 0.2 s while a run is going, the proportional set size (PSS) summed over the driver
and every process of the local Ray instance it started (GCS, raylet with its object store, workers,
actors): shared pages count once, so the sum is the memory the run really holds. Reports each
run's peak. Prints one JSON line.

    python benchmarks/infer_memory.py      # 100 and 1000 LGG cases (20 and 200 patients x 5 slices)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading

# The same sample data and checkpoint as the throughput benchmark.
from infer_throughput import prepare

MB = 1024 * 1024


class PeakSampler:
    """Background thread recording the peak total PSS of this process and its descendants."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peak = 0
        self.processes = 0  # in the tree at the peak
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            total, processes = _tree_pss()
            if total > self.peak:
                self.peak, self.processes = total, processes


def _tree_pss() -> tuple[int, int]:
    """PSS bytes of this process and every descendant (the local Ray instance init_ray started), from /proc, and how many there are."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    total, processes, todo = 0, 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += sum(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
            processes += 1
        except OSError:
            continue  # the process ended between the listing and the read
    return total, processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 100 cases at 1x: enough for the pipeline to reach its steady state (every decode/write slot
    # busy). A smaller 1x run ends before Ray has started all its worker processes, so the ratio
    # would measure the worker pool filling up, not memory growing with the archive.
    parser.add_argument("--patients", type=int, default=20, help="LGG patients of the 1x run; the 10x run has 10x as many")
    parser.add_argument("--slices", type=int, default=5, help="slices per patient")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    from raysegment.infer import InferConfig, run_inference
    from raysegment.runtime import init_ray

    init_ray()
    report = {"benchmark": "infer_memory", "size": args.size, "batch_size": args.batch_size}
    with tempfile.TemporaryDirectory() as root:
        for scale in (1, 10):
            manifest, model = prepare(os.path.join(root, f"x{scale}"), "lgg", args.patients * scale, args.size, args.slices)
            config = InferConfig(model=model, manifest=manifest, out=os.path.join(root, f"out{scale}"), batch_size=args.batch_size,
                                 workers=1, cpus_per_worker=1.0)  # as measured for the README (before defaults fitted the machine)
            with PeakSampler() as sampler:
                result = run_inference(config)
            report[f"x{scale}"] = {"cases": result.cases, "slices": result.slices, "peak_pss_mb": round(sampler.peak / MB, 1),
                                 "processes_at_peak": sampler.processes}
    report["peak_ratio_10x_to_1x"] = round(report["x10"]["peak_pss_mb"] / report["x1"]["peak_pss_mb"], 3)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
