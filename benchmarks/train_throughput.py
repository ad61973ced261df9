"""Training throughput: raysegment's Ray Train loop vs a bare single-process PyTorch loop.

Same model, batch size, image size, thread count and machine, in one run. The Ray figure is the
images/s that ``raysegment.train`` measures itself (training steps of an epoch, data loading from
Ray Data included, first epoch left out as warm-up); the bare figure is a plain loop over tensors
already in memory, so the ratio is the cost of the whole distributed pipeline on one worker.

    python benchmarks/train_throughput.py --epochs 4 --image-size 64 --batch-size 16

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


def bare_loop(model_config: dict, batch_size: int, image_size: int, steps: int, threads: int) -> float:
    """Images/s of forward + Dice loss + backward + Adam on random tensors (after 3 warm-up steps)."""
    import torch

    from raysegment.losses import create_loss
    from raysegment.models import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model("unet", in_channels=3, classes=1, **model_config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = create_loss("dice")
    images = torch.rand(batch_size, 3, image_size, image_size)
    masks = (torch.rand(batch_size, 1, image_size, image_size) > 0.7).float()
    for step in range(steps + 3):
        if step == 3:
            started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images), masks).backward()
        optimizer.step()
    return steps * batch_size / (time.perf_counter() - started)


def ray_loop(workdir: str, model_config: dict, batch_size: int, image_size: int, epochs: int, threads: int) -> dict:
    from raysegment.ingest import ingest
    from raysegment.sample_data import make_sample_data
    from raysegment.train import load_config, train

    make_sample_data(f"{workdir}/data", "lgg", patients=8, slices=10, size=image_size)
    ingest("lgg", f"{workdir}/data", f"{workdir}/manifest.parquet")
    config = load_config(None, {
        "out": f"{workdir}/run", "data.manifest": f"{workdir}/manifest.parquet",
        "data.preprocess.steps": [{"name": "scale"}, {"name": "resize", "size": image_size}],
        "data.augment.enabled": False,  # the bare loop does not augment either
        "model.name": "unet", "model.config": model_config, "optim.epochs": epochs, "optim.batch_size": batch_size,
        "optim.loss": "dice", "scaling.workers": 1, "scaling.cpus_per_worker": threads, "tracking.tensorboard": False,
    })
    result = train(config)
    steady = result.history[result.history["epoch"] > 1]
    return {"images_per_s": float(steady["images_per_s"].mean()),
            "train_examples_per_epoch": round(float((steady["images_per_s"] * steady["train_time_s"]).mean())),
            "wall_time_s": result.summary["wall_time_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (and Ray CPUs) of the one worker")
    parser.add_argument("--bare-steps", type=int, default=20)
    args = parser.parse_args()

    from raysegment.runtime import init_ray

    init_ray()
    model_config = {"base_channels": args.base_channels, "depth": 3}
    with tempfile.TemporaryDirectory() as workdir:
        ray = ray_loop(workdir, model_config, args.batch_size, args.image_size, args.epochs, args.threads)
    bare = bare_loop(model_config, args.batch_size, args.image_size, args.bare_steps, args.threads)
    print(json.dumps({
        "model": "unet", **model_config, "batch_size": args.batch_size, "image_size": args.image_size,
        "threads": args.threads, "bare_images_per_s": round(bare, 2), "ray_images_per_s": round(ray["images_per_s"], 2),
        "ratio": round(ray["images_per_s"] / bare, 3), "ray_train_examples_per_epoch": ray["train_examples_per_epoch"],
        "ray_wall_time_s": round(ray["wall_time_s"], 1),
    }))


if __name__ == "__main__":
    main()
