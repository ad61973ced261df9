"""Slices/s of ``raysegment infer`` against a bare PyTorch loop over the same scans, model and batch size.

Both read every scan, preprocess it as the checkpoint says, run the model in batches of
``--batch-size`` slices and map the masks back to the input grid; only ``raysegment infer`` writes
masks, records and tables (that is part of its cost). Ray starts, and one warm-up case runs,
before the clock does; actor start-up and model loading are inside the timed run.
Prints one JSON line.

    python benchmarks/infer_throughput.py --kind brats --patients 4 --size 64 --slices 32
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
    ingest(kind, data, manifest)
    preprocess = PREPROCESS[kind]
    spec = ModelSpec("unet", CHANNELS[kind], preprocess.num_classes, {"base_channels": base_channels, "depth": 3})
    save_model(model, spec.build(), spec, preprocess=preprocess.model_dump(), class_names=preprocess.class_names)
    return manifest, model


def bare_loop(manifest_uri: str, model_uri: str, batch_size: int) -> tuple[int, float]:
    """(slices, seconds) of the same work in one process, one batch after another."""
    import torch

    from raysegment.infer.postprocess import binarize, to_input_grid
    from raysegment.manifest import read_manifest
    from raysegment.models import load_model
    from raysegment.preprocess import iter_examples

    model, metadata = load_model(model_uri)
    config = PreprocessConfig(**metadata["preprocess"])
    start = time.perf_counter()
    slices = 0
    with torch.inference_mode():
        for _, row in read_manifest(manifest_uri).iterrows():
            examples = list(iter_examples(row.to_dict(), config, with_mask=False))
            images = np.stack([e["image"] for e in examples])
            prob = np.concatenate([torch.sigmoid(model(torch.from_numpy(images[i : i + batch_size]))).numpy()
                                   for i in range(0, len(images), batch_size)])
            geometry = examples[0]["geometry"]
            binarize(to_input_grid(prob, geometry["steps"], geometry["orientation"], volume=row["level"] == "volume"), 0.5, False)
            slices += len(images)
    return slices, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["lgg", "brats"], default="brats")
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--slices", type=int, default=32, help="slices per patient (LGG) or per volume (BraTS)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    from raysegment.infer import InferConfig, run_inference
    from raysegment.runtime import init_ray

    with tempfile.TemporaryDirectory() as root:
        manifest, model = prepare(root, args.kind, args.patients, args.size, args.slices)
        init_ray()
        # One case first, so that the timed run finds Ray's worker processes started and their
        # imports done, as a long run would after its first minute.
        run_inference(InferConfig(model=model, manifest=manifest, out=os.path.join(root, "warmup"), limit=1))
        result = run_inference(InferConfig(model=model, manifest=manifest, out=os.path.join(root, "out"),
                                           batch_size=args.batch_size, workers=args.workers))
        bare_slices, bare_seconds = bare_loop(manifest, model, args.batch_size)
    bare = bare_slices / bare_seconds
    print(json.dumps({
        "benchmark": "infer_throughput", "kind": args.kind, "cases": result.cases, "slices": result.slices,
        "batch_size": args.batch_size, "workers": args.workers, "size": args.size,
        "raysegment_slices_per_s": round(result.slices_per_second, 2), "bare_torch_slices_per_s": round(bare, 2),
        "ratio": round(result.slices_per_second / bare, 3), "cpus": os.cpu_count(), "machine": platform.machine(),
    }))


if __name__ == "__main__":
    main()
