"""Slices/s of ``raysegment infer`` against a bare PyTorch loop over the same scans, model and batch size.

Both do the same job over an unlabeled, nightly-style manifest: read every scan, preprocess it as
the checkpoint says, run the model in batches of ``--batch-size`` slices, map the masks back to the
input grid and write them in the input's format; ``raysegment infer`` also writes its records and
tables (that is part of its cost).

The bare loop runs in a fresh process, one case after another, with torch's default threads; its
clock starts before ``import torch`` (a script pays its imports and model load too). Ray is up and
one warm-up case has run before raysegment's clock starts, as on a running cluster; the predictor
actors' start-up and model loading are inside the timed run. Reported for both: end-to-end
slices/s, time to the first finished case, and the steady rate after it.
Prints one JSON line.

    python benchmarks/infer_throughput.py --kind brats --patients 24 --size 128 --slices 64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np

from raysegment.ingest import ingest
from raysegment.manifest import write_manifest
from raysegment.models import ModelSpec, save_model
from raysegment.preprocess import PreprocessConfig
from raysegment.sample_data import make_sample_data

PREPROCESS = {
    "lgg": PreprocessConfig(labels={"tumor": "nonzero"}, steps=[{"name": "scale"}, {"name": "resize", "size": 64}]),
    "brats": PreprocessConfig(labels={"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}, steps=[{"name": "zscore"}], orientation="RAS"),
}
CHANNELS = {"lgg": 3, "brats": 4}


def prepare(root: str, kind: str, patients: int, size: int, per_patient: int, base_channels: int = 8) -> tuple[str, str]:
    """Write ``patients`` sample cases under ``root``; returns (manifest URI, checkpoint URI).

    ``per_patient`` is slices per patient for LGG, slices per volume for BraTS.
    """
    data, manifest, model = (os.path.join(root, n) for n in ("data", "manifest.parquet", "model"))
    options = {"slices": per_patient} if kind == "lgg" else {"depth": per_patient, "validation": 0, "quirks": False}
    make_sample_data(data, kind, patients=patients, size=size, **options)
    table = ingest(kind, data, manifest).manifest
    # New scans of a nightly archive have no ground truth yet: no per-case metrics to compute.
    table["mask_uri"], table["split"] = None, "unlabeled"
    write_manifest(table, manifest)
    preprocess = PREPROCESS[kind]
    spec = ModelSpec("unet", CHANNELS[kind], preprocess.num_classes, {"base_channels": base_channels, "depth": 3})
    save_model(model, spec.build(), spec, preprocess=preprocess.model_dump(), class_names=preprocess.class_names)
    return manifest, model


def bare_loop(manifest_uri: str, model_uri: str, batch_size: int, out: str, start: float, amp: str = "none") -> dict:
    """The same job in one process, one case after another: read, preprocess, model in batches,
    back to the input grid, threshold, write the mask in the input's format. ``start``: the
    process's clock before its first import."""
    import torch

    from raysegment import storage
    from raysegment.infer.postprocess import to_input_grid
    from raysegment.manifest import read_manifest
    from raysegment.models import load_model, precision
    from raysegment.postprocess import PostprocessConfig
    from raysegment.preprocess import apply_steps, reorient, stack_channels
    from raysegment.readers import read_scan
    from raysegment.writers import WRITERS, Reference, output_format

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, metadata = load_model(model_uri, map_location=device)
    autocast = precision.autocast(amp, device)
    config = PreprocessConfig(**metadata["preprocess"])
    finished = []  # (seconds since start, slices) per case
    with torch.inference_mode():
        for _, row in read_manifest(manifest_uri).iterrows():
            scans = [read_scan(u) for u in row["image_uris"]]
            image = stack_channels(scans, list(row["channels"]), config.channels)
            orientation = None
            if image.ndim == 4:
                image, _, orientation = reorient(image, scans[0].affine, config.orientation)
            prepared = [apply_steps(image[..., k], None, config) for k in range(image.shape[-1])] if image.ndim == 4 \
                else [apply_steps(image, None, config)]
            images = np.stack([p[0] for p in prepared])
            outputs = []
            for i in range(0, len(images), batch_size):
                with autocast():
                    logits = model(torch.from_numpy(images[i : i + batch_size]).to(device))
                outputs.append(torch.sigmoid(logits.float()).cpu().numpy())
            prob = np.concatenate(outputs)
            mask = PostprocessConfig().apply(to_input_grid(prob, prepared[0][2], orientation, volume=image.ndim == 4))
            writer = WRITERS.get(output_format("auto", scans[0].metadata.get("format") or row["format"]))()
            reference = Reference(row["case_id"], scans[0].affine, scans[0].spacing, scans[0].metadata,
                                  list(row["image_uris"]), list(metadata["class_names"]))
            storage.write_bytes(f"{out}/{row['case_id']}{writer.suffix}", writer.encode(mask, reference))
            finished.append((time.perf_counter() - start, len(images)))
    return rates(finished)


def rates(finished: list[tuple[float, int]]) -> dict:
    """End-to-end slices/s, seconds to the first finished case, and slices/s after it."""
    slices = sum(n for _, n in finished)
    first, last = finished[0][0], finished[-1][0]
    return {"slices": slices, "seconds": round(last, 2), "slices_per_s": round(slices / last, 2),
            "first_case_s": round(first, 2),
            "steady_slices_per_s": round((slices - finished[0][1]) / (last - first), 2) if last > first else None}


def run_bare(manifest: str, model: str, batch_size: int, out: str, amp: str) -> dict:
    """:func:`bare_loop` in a fresh Python process (its imports are part of its time)."""
    import subprocess
    import sys

    code = (f"import time; start = time.perf_counter(); import json, sys; "
            f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); from infer_throughput import bare_loop; "
            f"print(json.dumps(bare_loop({manifest!r}, {model!r}, {batch_size}, {out!r}, start, {amp!r})))")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def gpu_figures(model_uri: str, size: int, ray: dict, bare: dict, amp: str) -> dict:
    """Device, amp and model FLOP utilisation of the steady rates (one slice = one forward pass)."""
    import torch

    from raysegment.models import load_model
    from raysegment.models.flops import forward_flops, mfu

    name = torch.cuda.get_device_name()
    model, metadata = load_model(model_uri)
    flops = forward_flops(model, torch.rand(1, int(metadata["model"]["in_channels"]), size, size))
    return {"device": name, "amp": amp, "gflops_per_slice": round(flops / 1e9, 3),
            "raysegment_mfu": mfu(flops, ray["steady_slices_per_s"], name), "bare_mfu": mfu(flops, bare["steady_slices_per_s"], name)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["lgg", "brats"], default="brats")
    parser.add_argument("--patients", type=int, default=24)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--slices", type=int, default=64, help="slices per patient (LGG) or per volume (BraTS)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--split", action="store_true", help="decode and write tasks beside the predictors, as on a cluster or GPUs")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none", help="bf16 for the GPU figures")
    args = parser.parse_args()

    import torch

    from raysegment.infer import InferConfig, run_inference
    from raysegment.runtime import init_ray

    with tempfile.TemporaryDirectory() as root:
        manifest, model = prepare(root, args.kind, args.patients, args.size, args.slices, args.base_channels)
        os.makedirs(os.path.join(root, "bare"))
        bare = run_bare(manifest, model, args.batch_size, os.path.join(root, "bare"), args.amp)
        gpu = torch.cuda.is_available()
        init_ray()
        # One case first: a running cluster has its worker processes started and their imports done.
        run_inference(InferConfig(model=model, manifest=manifest, out=os.path.join(root, "warmup"), limit=1))
        finished = []
        start = time.perf_counter()
        result = run_inference(InferConfig(model=model, manifest=manifest, out=os.path.join(root, "out"),
                                           batch_size=args.batch_size, workers=args.workers,
                                           cpus_per_worker=args.cpus_per_worker, amp=args.amp,
                                           gpus_per_worker=1 if gpu else 0, fuse=False if args.split else None),
                               on_case=lambda row, _: finished.append((time.perf_counter() - start, int(row["slices"]))))
        ray = rates(finished)
        figures = gpu_figures(model, args.size, ray, bare, args.amp) if gpu else {"device": "cpu"}
    print(json.dumps({**figures,
        "benchmark": "infer_throughput", "kind": args.kind, "cases": result.cases, "slices": result.slices,
        "size": args.size, "base_channels": args.base_channels, "batch_size": args.batch_size, "workers": args.workers,
        "cpus_per_worker": args.cpus_per_worker, "pipeline": result.run["pipeline"], "raysegment": ray, "bare_torch": bare,
        "ratio": round(ray["slices_per_s"] / bare["slices_per_s"], 3),
        "steady_ratio": round(ray["steady_slices_per_s"] / bare["steady_slices_per_s"], 3),
        "cpus": os.cpu_count(), "machine": platform.machine(),
    }))


if __name__ == "__main__":
    main()
